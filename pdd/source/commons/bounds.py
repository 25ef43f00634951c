"""The bounds of one category's listing in one `pdd scrape` process (pdd/source/commons/walk.py), with
their defaults, declared once: ScrapeConfig holds them and the scrape command's options default to them
(this module imports nothing, so building pdd's parser stays cheap; see pdd/source/commons/cli.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListingBounds:
    """A listing that hits one stops the scrape; they are not part of a run's identity, so raising one and
    running the same command again resumes the run."""
    max_idle_requests: int = 20            # requests in a row naming no file or subcategory new to the listing
    max_category_requests: int = 100_000   # requests per category (each serves up to 50 files: 5 million files)
    category_deadline: float = 86_400.0    # seconds per category
