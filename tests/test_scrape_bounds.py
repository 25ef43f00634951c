"""Every category listing is bounded (issue 25, class 5): a continuation that changes on every request
but brings nothing used to loop forever (read_category caught exact repeats only, and --limit does not
help when no files arrive). Requests in a row without a new file or subcategory, requests per category
and seconds per category are bounded; a bound hit is one line naming the category, the bound and its
option (exit 2), the store keeps everything, and the same command resumes where it stopped."""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import FIXTURES, engine_env
from pdd import cli
from pdd.core.errors import PddError
from pdd.source.commons.bounds import ListingBounds
from pdd.source.commons.mirror import Catalogue, MirrorServer
from pdd.source.commons.walk import ScrapeConfig, Scraper
from pdd.source.store import Store
from scrape_helpers import EMAIL, client, pdd_cmd, scrape, tables

REPO = Path(__file__).resolve().parents[1]


class Endless(BaseHTTPRequestHandler):
    """A listing whose continuation changes on every request: with no pages (mode "empty"), or with one
    new file each time whose imageinfo is malformed (mode "files": stored as rejected, so each response is
    progress); mode "end" answers the last response. ``delay`` seconds before each answer."""
    mode, delay, served, queries = "empty", 0.0, 0, []

    def do_GET(self):  # noqa: N802
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        Endless.queries.append(q)
        time.sleep(Endless.delay)
        Endless.served += 1
        n = Endless.served
        body: dict = {"batchcomplete": True, "query": {"pages": []}}
        if Endless.mode != "end":
            body["continue"] = {"gcmcontinue": f"file|{n:08d}", "continue": "gcmcontinue||"}
        if Endless.mode == "files":
            body["query"]["pages"] = [{"pageid": 1000 + n, "ns": 6, "title": f"File:{n}.jpg", "imageinfo": "x"}]
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endless():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Endless.mode, Endless.delay, Endless.served, Endless.queries = "empty", 0.0, 0, []
    yield f"http://127.0.0.1:{srv.server_address[1]}/w/api.php"
    srv.shutdown()


def run_cli(api: str, db: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(pdd_cmd("scrape", "--api", api, "--email", EMAIL, "--db", db, "--category", "Category:Endless",
                                  "--depth", "0", "--no-sdc", "--max-retries", "0", *extra),
                          cwd=REPO, env={**engine_env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)


def without_resume_state(t: dict) -> dict:
    return {k: v for k, v in t.items() if k not in ("scrape_runs", "scrape_categories")}


@pytest.mark.skipif(not (FIXTURES / "index.json").exists(), reason="needs ../shared/fixtures/commons")
def test_a_continuation_that_never_repeats_stops_in_seconds_and_resumes(endless, tmp_path):
    db = tmp_path / "pdd.duckdb"
    with MirrorServer(Catalogue.from_fixture(FIXTURES)) as srv:   # something already stored, that must stay
        scrape(srv.api_url, db)
    before = tables(db)
    t0 = time.monotonic()
    proc = run_cli(endless, db)   # the default bounds
    took = time.monotonic() - t0
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert took < 30 and Endless.served == ListingBounds().max_idle_requests
    assert lines[0].startswith("pdd: error: ") and "Category:Endless: 20 listing requests in a row named no new file" in lines[0]
    assert "raise --max-idle-requests (now 20)" in lines[0] and "the same command resumes here" in lines[0]
    after = tables(db)
    assert without_resume_state(after) == without_resume_state(before)   # nothing stored lost, nothing added
    with Store(db, read_only=True) as store:
        run = store.query("SELECT run_id, finished_at FROM scrape_runs ORDER BY run_id DESC LIMIT 1")[0]
        cat = store.query("SELECT files_cont, files_done FROM scrape_categories WHERE run_id = ?", [run["run_id"]])[0]
    assert run["finished_at"] is None and not cat["files_done"]
    assert json.loads(cat["files_cont"])["gcmcontinue"] == "file|00000020"   # the last continuation is kept

    # the same command resumes there: with the listing now ending, the run finishes
    Endless.mode, Endless.queries = "end", []
    proc = run_cli(endless, db)
    assert proc.returncode == 0, proc.stderr
    assert "resumed and finished" in proc.stdout
    assert Endless.queries[0]["gcmcontinue"] == "file|00000020"
    assert without_resume_state(tables(db)) == without_resume_state(before)


def bounded_run(api: str, db: Path, bounds: ListingBounds) -> str:
    cfg = ScrapeConfig(api=api, categories=["Category:Endless"], depth=0, sdc=False, bounds=bounds)
    with Store(db) as store:
        with pytest.raises(PddError) as err:
            Scraper(store, client(api, max_retries=0), cfg).run()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_requests_per_category_are_bounded_and_what_came_is_kept(endless, tmp_path):
    Endless.mode = "files"    # every response brings a new file: progress, but never an end
    msg = bounded_run(endless, tmp_path / "db.duckdb", ListingBounds(max_category_requests=7))
    assert "Category:Endless: 7 listing requests did not reach its end" in msg and "raise --max-category-requests (now 7)" in msg
    assert Endless.served == 7
    with Store(tmp_path / "db.duckdb", read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM revisions WHERE status = 'rejected'")[0]["n"] == 7
    # raising the bound resumes the same run after the 7th response
    Endless.mode = "end"
    report, _ = scrape(endless, tmp_path / "db.duckdb", categories=["Category:Endless"], thumb_width=512, depth=0, sdc=False)
    assert report.resumed and report.finished and Endless.queries[-1]["gcmcontinue"] == "file|00000007"


def test_a_listing_has_a_deadline(endless, tmp_path):
    Endless.mode, Endless.delay = "files", 0.2
    msg = bounded_run(endless, tmp_path / "db.duckdb", ListingBounds(category_deadline=0.5))
    assert "Category:Endless: its listing did not end within" in msg and "raise --category-deadline (now 0.5 s)" in msg
    assert Endless.served <= 4


@pytest.mark.parametrize("option,value", [("--max-idle-requests", "0"), ("--max-category-requests", "-1"),
                                          ("--category-deadline", "nan")])
def test_bounds_below_one_are_one_line(tmp_path, capsys, option, value):
    rc = cli.main(["scrape", "--email", EMAIL, "--api", "http://127.0.0.1:9/w/api.php", "--db", str(tmp_path / "x.duckdb"),
                   option, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"pdd: error: {option} {value} must be at least 1"
    assert not (tmp_path / "x.duckdb").exists()
