"""A misbehaving API server on 127.0.0.1 (issue 9, "No hang, no unbounded memory, no traceback"): every
case ends with a one-line PddError within a bounded time."""
import gzip
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pdd.errors import PddError
from pdd.source.commons.client import CommonsClient, ScrapeConfig, Scraper
from pdd.source.store import Store
from scrape_helpers import EMAIL


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour = None   # set per test: (handler, query dict) -> None, writes the whole response
    hits = 0

    def do_GET(self):  # noqa: N802
        Handler.hits += 1
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        try:
            Handler.behaviour(self, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass

    def send(self, body: bytes, status=200, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Handler.hits = 0
    yield f"http://127.0.0.1:{srv.server_address[1]}/w/api.php"
    srv.shutdown()


def client(api, **kw):
    opts = dict(timeout=2.0, max_retries=0, backoff_base=0.01, backoff_cap=0.05)
    opts.update(kw)
    return CommonsClient(api, EMAIL, **opts)


def bounded(seconds, fn):
    """fn() must raise a one-line PddError within SECONDS; it runs in a daemon thread, so a hang fails
    the test instead of hanging it."""
    outcome = {}

    def target():
        try:
            fn()
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still running after {seconds} s (hang)")
    err = outcome["error"]
    assert isinstance(err, PddError), repr(err)
    assert "\n" not in str(err)
    return str(err)


def test_body_dripping_one_byte_at_a_time_hits_the_total_deadline(server):
    def drip(h, q):
        h.send_response(200)
        h.send_header("Content-Length", str(2 * 1024 ** 3))
        h.end_headers()
        for _ in range(200):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)          # each read is well inside --timeout
    Handler.behaviour = drip
    msg = bounded(8, lambda: client(server, total_timeout=1.5).api({"action": "query"}))
    assert "not complete after 2 s" in msg or "not complete after 1 s" in msg


def test_thumbnail_dripping_one_byte_at_a_time_hits_the_total_deadline(server):
    def drip(h, q):
        h.send_response(200)
        h.send_header("Content-Length", str(50 * 1024 ** 2))
        h.end_headers()
        for _ in range(200):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)
    Handler.behaviour = drip
    url = server.replace("/w/api.php", "/thumb.jpg")
    assert "not complete after" in bounded(8, lambda: client(server, total_timeout=1.5).media(url))


def test_gzip_bomb_is_capped(server):
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", 9)   # ~64 KB on the wire
    Handler.behaviour = lambda h, q: h.send(bomb, headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
    msg = bounded(20, lambda: client(server, max_api_bytes=1024 * 1024).api({"action": "query"}))
    assert "larger than 1048576 bytes" in msg


def test_redirect_loop_is_one_line(server):
    Handler.behaviour = lambda h, q: h.send(b"", status=302, headers=[("Location", h.path)])
    assert "redirects in a loop" in bounded(20, lambda: client(server).api({"action": "query"}))


def test_deeply_nested_json_is_one_line(server):
    Handler.behaviour = lambda h, q: h.send(b"[" * 200000 + b"]" * 200000, headers=[("Content-Type", "application/json")])
    assert "malformed JSON" in bounded(20, lambda: client(server).api({"action": "query"}))


def test_huge_retry_after_is_capped_and_announced(server):
    answers = iter([(429, b"{}"), (200, b'{"batchcomplete": true}')])

    def flaky(h, q):
        status, body = next(answers)
        h.send(body, status=status, headers=[("Retry-After", "100000"), ("Content-Type", "application/json")])
    Handler.behaviour = flaky
    waits, lines = [], []
    c = client(server, max_retries=2, backoff_cap=120, retry_after_cap=120, sleep=waits.append, notify=lines.append)
    assert c.api({"action": "query"}) == {"batchcomplete": True}
    assert waits == [120] and len(lines) == 1 and "waiting 120 s" in lines[0] and "HTTP 429" in lines[0]


def test_cli_caps_retry_after_at_the_backoff_cap():
    import argparse

    from pdd.source.commons import cli as scrape_cli

    args = argparse.Namespace(api="http://127.0.0.1:9/w/api.php", email=EMAIL, timeout=5.0, max_retries=1, backoff=0.1,
                              backoff_cap=7.0, media_host=None)
    assert scrape_cli._client(args).retry_after_cap == 7.0


def test_continuations_alternating_across_batches_stop(server, tmp_path):
    nxt = {None: "A", "A": "B", "B": "A"}

    def alternate(h, q):
        cont = nxt[q.get("gcmcontinue")]
        body = {"batchcomplete": True, "continue": {"gcmcontinue": cont, "continue": "gcmcontinue||"}, "query": {"pages": []}}
        h.send(json.dumps(body).encode(), headers=[("Content-Type", "application/json")])
    Handler.behaviour = alternate
    cfg = ScrapeConfig(api=server, categories=["Category:Loop"], depth=0, sdc=False)
    with Store(tmp_path / "db.duckdb") as store:
        msg = bounded(20, lambda: Scraper(store, client(server), cfg).run())
    assert "repeated a continuation of Category:Loop" in msg and Handler.hits <= 4
