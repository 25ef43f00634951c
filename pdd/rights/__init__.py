"""Licence decisions: fail closed, for every source."""
