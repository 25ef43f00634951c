"""Benchmark `pdd scrape` against the local mirror with 20 ms latency per request.

Prints API requests per accepted file (goal <= 0.05) beside what a one-file-at-a-time client
(list the category, then one imageinfo call per file, plus one SDC call per file) would make,
and files/s. Usage: python bench/scrape.py [--files 1000] [--latency 0.02] [--no-sdc]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdd.source.commons.http import CommonsClient  # noqa: E402
from pdd.source.commons.mirror import Catalogue, MirrorServer  # noqa: E402
from pdd.source.commons.walk import ScrapeConfig, Scraper  # noqa: E402
from pdd.source.store import Store  # noqa: E402

GOAL = 0.05  # API requests per accepted file with SDC on (tests/test_scrape_efficiency.py checks the count)


def request_kind(q: dict) -> str:
    """What one API request was for (the mirror's log of its query parameters)."""
    if q.get("action") == "wbgetentities":
        return "SDC wbgetentities"
    if q.get("list") == "categorymembers":
        return f"list categorymembers ({q.get('cmtype', 'all')})"
    if q.get("generator") == "categorymembers":
        what = f"generator categorymembers ({q.get('gcmtype', 'all')}) + imageinfo"
        return what + (", iicontinue" if "iicontinue" in q else ", gcmcontinue" if "gcmcontinue" in q else ", first")
    if q.get("prop") == "imageinfo":
        return "imageinfo by pageids/titles" + (", iicontinue" if "iicontinue" in q else "")
    return "other"


def run(files: int, latency: float, sdc: bool, n_categories: int) -> dict:
    cat = Catalogue.synthetic(files, seed=42, n_categories=n_categories)
    with MirrorServer(cat, latency=latency) as srv, tempfile.TemporaryDirectory() as tmp:
        client = CommonsClient(srv.api_url, "pdd-bench@pd-diffusion.org", backoff_base=0.05)
        t0 = time.monotonic()
        with Store(Path(tmp) / "pdd.duckdb") as store:
            report = Scraper(store, client, ScrapeConfig(api=srv.api_url, categories=["Category:Synthetic paintings"], depth=3,
                                                         sdc=sdc)).run()
        dt = time.monotonic() - t0
        api_log = srv.requests("api")
        api_reqs, media_reqs = len(api_log), len(srv.requests("media"))
    kinds: dict[str, int] = {}
    for e in api_log:
        k = request_kind(e["params"])
        kinds[k] = kinds.get(k, 0) + 1
    # a one-file-at-a-time client: the same subcategory walk, a plain file listing (500 per page),
    # then one imageinfo request (and one SDC request) per file in each category
    occurrences = sum(len(c.files) for c in cat.categories.values())
    listing = sum(max(1, math.ceil(len(c.files) / 500)) for c in cat.categories.values())
    naive = len(cat.categories) + listing + occurrences * (2 if sdc else 1)
    return {"report": report, "dt": dt, "api": api_reqs, "kinds": kinds, "media": media_reqs, "naive": naive, "cats": len(cat.categories),
            "occ": occurrences}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--categories", type=int, default=3, help="subcategories the files are spread over")
    ap.add_argument("--latency", type=float, default=0.02)
    args = ap.parse_args(argv)
    print(f"catalogue: {args.files} synthetic files in {args.categories + 1} categories (cycle, diamond, 1 in 7 files in two), "
          f"{args.latency * 1000:.0f} ms latency per request, serial requests")
    print(f"{'':16s} {'API req':>8s} {'one-at-a-time':>14s} {'req/accepted':>13s} {'one-at-a-time':>14s} "
          f"{'accepted':>9s} {'rejected':>9s} {'thumbs':>7s} {'files/s':>8s} {'wall s':>7s}")
    runs = []
    for sdc in (True, False):
        r = run(args.files, args.latency, sdc, args.categories)
        rep, acc = r["report"], max(1, r["report"].accepted)
        print(f"{'SDC on' if sdc else 'SDC off':16s} {r['api']:8d} {r['naive']:14d} {r['api'] / acc:13.3f} {r['naive'] / acc:14.3f} "
              f"{rep.accepted:9d} {rep.rejected:9d} {r['media']:7d} {rep.seen / r['dt']:8.1f} {r['dt']:7.1f}")
        runs.append((sdc, r))
    for sdc, r in runs:
        print(f"API requests by kind, {'SDC on' if sdc else 'SDC off'}:")
        for kind, n in sorted(r["kinds"].items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:5d}  {kind}")
    sdc_on = next(r for sdc, r in runs if sdc)
    figure = sdc_on["api"] / max(1, sdc_on["report"].accepted)
    print(f"with SDC: {figure:.3f} API requests per accepted file; goal <= {GOAL}: {'met' if figure <= GOAL else 'MISSED'} "
          "(PD-Diffusion's one-file pattern needs about 1 per file, 2 with SDC)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
