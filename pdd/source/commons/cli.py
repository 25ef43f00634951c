"""`pdd scrape`, `pdd mirror`, `pdd label`: registered into the main CLI (pdd/cli.py), and what they print.

register() runs whenever `pdd` builds its parser, for every command and `pdd --help`; so the commands
import the scraper, the store and the mirror when they run, not at the top of this module (measured:
building pdd's parser takes 0.05 s of CPU, 0.15 s wall, without them and 0.4 s CPU, 0.9 s wall with
them: requests, tqdm, PIL, DuckDB, pyarrow).
"""
from __future__ import annotations

import time

from pdd.core.errors import PddError
from pdd.source.commons.bounds import ListingBounds


def cmd_scrape(args) -> int:
    from pdd.source.commons.http import client_from_args  # (lazy: start-up, see above)
    from pdd.source.commons.walk import Progress, ScrapeConfig, Scraper, human_bytes  # (lazy: start-up, see above)
    from pdd.source.store import Store  # (lazy: start-up, see above)

    client = client_from_args(args)  # validates --email before the database is touched
    if args.limit is not None and args.limit < 1:
        raise PddError("--limit must be at least 1")
    for option, value in (("--max-idle-requests", args.max_idle_requests), ("--max-category-requests", args.max_category_requests),
                          ("--category-deadline", args.category_deadline)):
        if not value >= 1:  # (also NaN)
            raise PddError(f"{option} {value} must be at least 1")
    cfg = ScrapeConfig(api=args.api, categories=args.category or ["Category:PD-Art (PD-old-100)"], depth=args.depth,
                       limit=args.limit, thumb_width=args.thumb_width, sdc=not args.no_sdc,
                       bounds=ListingBounds(args.max_idle_requests, args.max_category_requests, args.category_deadline))
    t0 = time.monotonic()
    with Store(args.db) as store:
        progress = Progress(client)
        scraper = Scraper(store, client, cfg, progress)
        try:
            report = scraper.run()
        finally:
            progress.done()
        counts = store.counts()
    dt = time.monotonic() - t0
    r, s = report, client.stats
    state = "finished" if r.finished else "stopped at --limit (run the same command to continue)"
    print(f"scrape run {r.run_id} {'resumed and ' if r.resumed else ''}{state} in {dt:.1f} s")
    rows = [("files seen", r.seen), ("accepted", r.accepted), ("rejected", r.rejected), ("unchanged since last run", r.unchanged),
            ("duplicates (several categories)", r.duplicates), ("new revisions", r.new_revisions),
            ("categories walked", r.categories), ("API requests", s.api_requests), ("image downloads", s.media_requests),
            ("retries", s.retries), ("downloaded", human_bytes(s.bytes))]
    for name, value in rows:
        print(f"  {name:32s} {value:>10}")
    if r.reasons:
        print("rejections this run:")
        for reason, n in sorted(r.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:6d}  {reason}")
    print(f"store {args.db}: {counts['accepted']} accepted, {counts['rejected']} rejected files")
    return 0


def cmd_mirror(args) -> int:
    from pdd.source.commons.mirror import serve  # (lazy: start-up, see above)

    serve(args.catalogue, host=args.host, port=args.port, latency=args.latency, transform_limit=args.transform_limit,
          faults=args.fault)
    return 0


def cmd_label(args) -> int:
    """Pick an accepted Commons file without a caption (or --file), print its Commons page, wait for Enter
    (while you add a caption there), then re-fetch its metadata: a new revision when something changed."""
    from pdd.source.commons.http import client_from_args  # (lazy: start-up, see above)
    from pdd.source.commons.label import pick  # (lazy: start-up, see above)
    from pdd.source.commons.records import refetch  # (lazy: start-up, see above)
    from pdd.source.store import Store, loads_json  # (lazy: start-up, see above)

    client = client_from_args(args)
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


def _net_options(p) -> None:
    p.add_argument("--email", required=True, help="your contact address (Wikimedia User-Agent policy)")
    p.add_argument("--api", default="https://commons.wikimedia.org/w/api.php")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--thumb-width", type=int, default=512)
    p.add_argument("--no-sdc", action="store_true", help="do not read Structured Data on Commons (P6216/P275, captions)")
    p.add_argument("--media-host", action="append", default=[], help="extra host thumbnails may come from (repeatable)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=6)
    p.add_argument("--backoff", type=float, default=2.0, help="first backoff wait in seconds (doubles, capped)")
    p.add_argument("--backoff-cap", type=float, default=120.0, help="longest wait between retries, also for a server's Retry-After")


def register(sub) -> None:
    """Add the scrape-side subcommands to pdd's subparsers."""
    p = sub.add_parser("scrape", help="scrape Wikimedia Commons categories into the store (polite, resumable, fail-closed)")
    _net_options(p)
    p.add_argument("--category", action="append", help='root category (repeatable; default "Category:PD-Art (PD-old-100)")')
    p.add_argument("--depth", type=int, default=3, help="how many levels of subcategories to follow")
    p.add_argument("--limit", type=int, help="stop after this many accepted files (the next run continues)")
    bounds = ListingBounds()
    p.add_argument("--max-idle-requests", type=int, default=bounds.max_idle_requests, metavar="N",
                   help="stop when N listing requests in a row of one category name no new file or subcategory (the next run continues; default %(default)s)")
    p.add_argument("--max-category-requests", type=int, default=bounds.max_category_requests, metavar="N",
                   help="stop after N listing requests of one category in one run (each serves up to 50 files; the next run continues; default %(default)s)")
    p.add_argument("--category-deadline", type=float, default=bounds.category_deadline, metavar="SECONDS",
                   help="stop when one category's listing has taken this long in one run (the next run continues; default %(default)s)")
    p.set_defaults(func=cmd_scrape)

    p = sub.add_parser("mirror", help="an offline MediaWiki-compatible mirror for tests and offline runs")
    p.add_argument("action", choices=["serve"])
    p.add_argument("catalogue", help="a fixture folder with index.json, or synthetic:N[:SEED]")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--transform-limit", type=int, default=50, help="thumbnails in a batch's first response (iicontinue)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:ON:N[,N...][:RETRY_AFTER]",
                   help="make request number N (counted per ON: api or media) fail with KIND: 429, 503, maxlag, ratelimited, "
                        "timeout, reset, truncate, badjson, badsha1 (repeatable; RETRY_AFTER in seconds, default 1)")
    p.set_defaults(func=cmd_mirror)

    p = sub.add_parser("label", help="pick an accepted file without a caption, open its Commons page, re-fetch after you edit it")
    _net_options(p)
    p.add_argument("--file", type=int, help="pageid to label (default: a random one without a caption)")
    p.add_argument("--seed", type=int, help="seed for the random pick")
    p.set_defaults(func=cmd_label)
