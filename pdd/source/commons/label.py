"""`pdd label`: the seed's labelling tool.

Pick a random accepted Commons file that has no caption, print its Commons page, wait for Enter
(while you add a caption there), then re-fetch its metadata: a new revision when something changed.
"""
from __future__ import annotations

import random

from pdd.core.errors import PddError
from pdd.source.store import Store, loads_json


def pick(store: Store, seed: int | None = None) -> dict | None:
    rows = store.query(
        "SELECT r.file_id, r.title, r.provenance FROM current_revisions r WHERE r.status = 'accepted' AND r.file_id LIKE 'commons:%' "
        "AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.revision_id = r.revision_id AND l.field = 'caption') ORDER BY r.file_id")
    if not rows:
        return None
    return random.Random(seed).choice(rows)


def cmd_label(args) -> int:
    from pdd.source.commons.cli import _client
    from pdd.source.commons.client import refetch

    client = _client(args)
    with Store(args.db) as store:
        if args.file is not None:
            row = store.latest_revision(f"commons:{args.file}")
            if row is None:
                raise PddError(f"commons:{args.file} is not in {args.db}; scrape it first")
        else:
            row = pick(store, args.seed)
            if row is None:
                print("every accepted Commons file already has a caption")
                return 0
        prov = loads_json(row.get("provenance"))
        pageid = int(row["file_id"].split(":", 1)[1])
        page = prov.get("descriptionurl") or f"https://commons.wikimedia.org/w/index.php?curid={pageid}"
        print(f"{row['title']}  (pageid {pageid})")
        print(f"add a caption (and a description) on its Commons page:\n  {page}")
        try:
            input("press Enter when you have saved your edit... ")
        except EOFError:
            pass
        revision_id, created, rec = refetch(store, client, pageid, args.thumb_width, not args.no_sdc)
        captions = [lb for lb in rec.labels if lb.field == "caption"]
    if created:
        print(f"stored revision {revision_id} of commons:{pageid} ({rec.status}; {len(captions)} caption(s))")
    else:
        print(f"nothing changed on Commons for commons:{pageid} (no caption yet?); no new revision")
    return 0
