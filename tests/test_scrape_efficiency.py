"""Commons efficiency (issue 9): API requests per accepted file on the local mirror, counted, not timed.

The catalogue is bench/scrape.py's (600 synthetic files in a root and 3 subcategories, 1 in 7 files in two
categories). Each category is one generator listing (subcategories and files together, gcmlimit=500) that
the API serves 50 thumbnails per response; SDC is read 50 ids per call, pooled across responses and
categories. A change that adds requests (a separate subcategory walk, a smaller gcmlimit, SDC calls per
batch) fails here."""
from __future__ import annotations

import pytest

from pdd.core.errors import PddError
from pdd.source.commons.mirror import Catalogue, MirrorServer
from scrape_helpers import SYNTH_ROOT, digest, scrape

GOAL = 0.05  # API requests per accepted file, with SDC on


def test_requests_per_accepted_file_with_sdc(tmp_path):
    with MirrorServer(Catalogue.synthetic(600, seed=42, n_categories=3)) as srv:
        report, c = scrape(srv.api_url, tmp_path / "pdd.duckdb", categories=[SYNTH_ROOT], thumb_width=512, depth=3)
        api = [e["params"] for e in srv.requests("api")]
    assert report.finished and report.accepted == 543 and report.duplicates == 86
    listings = [q for q in api if q.get("generator") == "categorymembers"]
    sdc = [q for q in api if q.get("action") == "wbgetentities"]
    assert len(api) == len(listings) + len(sdc) == c.stats.api_requests  # nothing else: no separate subcategory walk
    # root: 3 subcategories + 86 files (2 responses); each subcategory: 200 files (4 responses); 543 ids / 50
    assert (len(listings), len(sdc)) == (14, 11)
    assert all(q["gcmlimit"] == "500" for q in listings)
    ids = [i for q in sdc for i in q["ids"].split("|")]
    assert len(ids) == len(set(ids)) == 543  # each accepted file's SDC once; rejected ones never asked for
    assert [len(q["ids"].split("|")) for q in sdc] == [50] * 10 + [43]  # full calls across category ends
    assert len(api) / report.accepted <= GOAL, f"{len(api)} API requests for {report.accepted} accepted files"


def test_interrupted_at_a_pooled_sdc_call_resumes_to_the_same_database(tmp_path):
    """The first SDC call holds files of two categories (the root's and the first subcategory's): when it
    fails for good, nothing of either is committed past what is stored, and the next run ends with the
    database of an uninterrupted one."""
    with MirrorServer(Catalogue.synthetic(150, seed=1)) as srv:
        base, _ = scrape(srv.api_url, tmp_path / "base.duckdb", categories=[SYNTH_ROOT], thumb_width=512)
        start = srv.counts["api"]
        srv.inject("503", on="api", at=start + 3, retry_after=0)
        db = tmp_path / "pdd.duckdb"
        with pytest.raises(PddError, match="gave up after 0 retries"):
            scrape(srv.api_url, db, categories=[SYNTH_ROOT], thumb_width=512, client_kw={"max_retries": 0})
        failed = srv.requests("api")[start + 2]
        assert failed["fault"] == "503" and failed["params"]["action"] == "wbgetentities"
        pooled = {int(i[1:]) for i in failed["params"]["ids"].split("|")}
        cats = srv.catalogue.file_categories
        assert len(pooled) == 50 and len({cats[p][-1] for p in pooled}) == 2
        report, _ = scrape(srv.api_url, db, categories=[SYNTH_ROOT], thumb_width=512)
    assert report.resumed and report.finished and report.accepted == base.accepted
    assert digest(db) == digest(tmp_path / "base.duckdb")
