"""The mutable side: store, importers, scrapers, pinning. No build stage may import it."""
