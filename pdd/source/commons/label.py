"""`pdd label`: which file to caption next (the command itself is in pdd/source/commons/cli.py).

The seed's labelling tool picks a random accepted Commons file that has no caption; you add one on its
Commons page, and the file is re-fetched (pdd/source/commons/records.py: refetch).
"""
from __future__ import annotations

import random

from pdd.source.store import Store


def pick(store: Store, seed: int | None = None) -> dict | None:
    rows = store.query(
        "SELECT r.file_id, r.title, r.provenance FROM current_revisions r WHERE r.status = 'accepted' AND r.file_id LIKE 'commons:%' "
        "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.revision_id = r.revision_id AND l.field = 'caption') ORDER BY r.file_id")
    if not rows:
        return None
    return random.Random(seed).choice(rows)
