"""`pdd scrape`, `pdd mirror`, `pdd label`: registered into the main CLI (stages/cli.py)."""
from __future__ import annotations

import time

from pdd.core.errors import PddError


def _client(args):
    from pdd.source.commons.client import CommonsClient, validate_email

    validate_email(args.email)
    return CommonsClient(args.api, args.email, timeout=args.timeout, max_retries=args.max_retries, backoff_base=args.backoff,
                         backoff_cap=args.backoff_cap, retry_after_cap=args.backoff_cap, media_hosts=args.media_host)


def cmd_scrape(args) -> int:
    from pdd.source.commons.client import Progress, ScrapeConfig, Scraper, human_bytes
    from pdd.source.store import Store

    client = _client(args)  # validates --email before the database is touched
    if args.limit is not None and args.limit < 1:
        raise PddError("--limit must be at least 1")
    cfg = ScrapeConfig(api=args.api, categories=args.category or ["Category:PD-Art (PD-old-100)"], depth=args.depth,
                       limit=args.limit, thumb_width=args.thumb_width, sdc=not args.no_sdc)
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
    from pdd.source.commons.mirror import serve

    serve(args.catalogue, host=args.host, port=args.port, latency=args.latency, transform_limit=args.transform_limit,
          faults=args.fault)
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
    from pdd.source.commons import label

    p = sub.add_parser("scrape", help="scrape Wikimedia Commons categories into the store (polite, resumable, fail-closed)")
    _net_options(p)
    p.add_argument("--category", action="append", help='root category (repeatable; default "Category:PD-Art (PD-old-100)")')
    p.add_argument("--depth", type=int, default=3, help="how many levels of subcategories to follow")
    p.add_argument("--limit", type=int, help="stop after this many accepted files (the next run continues)")
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
    p.set_defaults(func=label.cmd_label)
