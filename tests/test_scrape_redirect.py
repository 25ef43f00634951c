"""Thumbnails come only from the configured hosts, and API answers only from the configured API host,
also when a server answers with a redirect (every hop is checked before it is fetched)."""
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import engine_env
from pdd.source.commons.http import CommonsClient, MediaRejected
from pdd.source.commons.mirror import Catalogue, MirrorServer
from scrape_helpers import EMAIL, FIXTURE_ROOT, pdd_cmd, scrape, tables

REPO = Path(__file__).resolve().parents[1]


class Redirector(BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        Redirector.hits.append(self.path)
        if self.path == "/offsite":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/stolen.jpg")  # another host: must not be followed
        elif self.path == "/onsite":
            self.send_response(302)
            self.send_header("Location", "/final.jpg")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
        self.end_headers()
        if self.path == "/final.jpg":
            self.wfile.write(b"bytes")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_redirect_off_the_configured_hosts_is_refused(server):
    client = CommonsClient(f"{server}/w/api.php", EMAIL, max_retries=0, backoff_base=0.01)
    with pytest.raises(MediaRejected, match="leaves the configured hosts"):
        client.media(f"{server}/offsite")
    assert client.media(f"{server}/onsite") == b"bytes"  # same-host redirects are fine


# ---- the API: every hop of an API call stays on the configured API host (issue 25, class 4) ----------------------
class ApiRedirector(BaseHTTPRequestHandler):
    """The configured API: every api.php call is redirected to TARGET + the same query (another server on
    127.0.0.1, another port: another host), /same-host.php to /w/api.php on itself."""
    target = ""
    hits: list = []

    def do_GET(self):  # noqa: N802
        ApiRedirector.hits.append(self.path)
        path, _, query = self.path.partition("?")
        if path == "/same-host.php":
            location = f"/answer.php?{query}"
        elif path == "/answer.php":
            body = b'{"batchcomplete": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        else:
            location = f"{ApiRedirector.target}?{query}"
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fixture_store(tmp_path):
    """A store holding a scrape of the fixture mirror, and the mirror (still serving: the other host)."""
    from conftest import FIXTURES
    if not (FIXTURES / "index.json").exists():
        pytest.skip("needs ../shared/fixtures/commons")
    with MirrorServer(Catalogue.from_fixture(FIXTURES)) as other:
        scrape(other.api_url, tmp_path / "pdd.duckdb")
        yield tmp_path / "pdd.duckdb", other


@pytest.fixture
def api_redirector():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), ApiRedirector)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ApiRedirector.hits = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_api_redirect_to_another_host_is_refused_and_nothing_is_recorded(fixture_store, api_redirector):
    db, other = fixture_store
    ApiRedirector.target = other.api_url          # 127.0.0.1, another port: a valid MediaWiki API with PD files
    api = f"{api_redirector}/w/api.php"
    before, served = tables(db), len(other.requests("api"))
    proc = subprocess.run(pdd_cmd("scrape", "--api", api, "--email", EMAIL, "--db", db, "--category", FIXTURE_ROOT,
                                  "--thumb-width", "960", "--max-retries", "0"),
                          cwd=REPO, env={**engine_env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    other_host, ours = other.base.split("//")[1], api_redirector.split("//")[1]
    assert lines[0].startswith("pdd: error: ") and "refused" in lines[0]
    assert f"http://{other_host} is not the configured API host http://{ours}" in lines[0]
    assert len(other.requests("api")) == served            # the other host was never asked
    after = tables(db)
    for name in ("scrape_runs", "scrape_categories"):  # a new run, resumable, its categories queued: nothing read
        after.pop(name), before.pop(name)
    assert after == before                                 # no file, revision, label, evidence or blob from it


def test_api_redirects_on_the_configured_host_are_followed(api_redirector):
    client = CommonsClient(f"{api_redirector}/same-host.php", EMAIL, max_retries=0, backoff_base=0.01)
    assert client.api({"action": "query"}) == {"batchcomplete": True}
    assert [h.split("?")[0] for h in ApiRedirector.hits] == ["/same-host.php", "/answer.php"]
