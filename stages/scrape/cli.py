"""`pdd scrape`, `pdd mirror`, `pdd label`: registered into the main CLI (stages/cli.py)."""
from __future__ import annotations


def register(sub) -> None:
    """Add the scrape-side subcommands to pdd's subparsers."""
    return None
