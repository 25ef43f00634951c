"""A misbehaving API server on 127.0.0.1 (issue 9, "No hang, no unbounded memory, no traceback"): every
case ends with a one-line PddError within a bounded time."""
import gzip
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pdd.core.errors import PddError
from pdd.source.commons.http import CommonsClient, client_from_args
from pdd.source.commons.walk import ScrapeConfig, Scraper
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

    args = argparse.Namespace(api="http://127.0.0.1:9/w/api.php", email=EMAIL, timeout=5.0, max_retries=1, backoff=0.1,
                              backoff_cap=7.0, media_host=None)
    assert client_from_args(args).retry_after_cap == 7.0


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


# ---- wrongly typed API fields: a one-line error for the response, or the file rejected with the reason ----------
PD_EM = {k: {"value": v} for k, v in dict(License="pd", LicenseShortName="Public domain", UsageTerms="Public domain",
                                           AttributionRequired="false", Copyrighted="False", Restrictions="").items()}


def page(pid, **info):
    ii = {"mime": "image/jpeg", "mediatype": "BITMAP", "size": 1000, "width": 10, "height": 10, "sha1": "0" * 40,
          "url": "http://127.0.0.1:9/x.jpg", "thumburl": "http://127.0.0.1:9/x.jpg", "extmetadata": PD_EM}
    ii.update(info)
    return {"pageid": pid, "title": f"File:{pid}.jpg", "imageinfo": [ii]}


def serve_batch(body):
    def answer(h, q):
        if q.get("action") == "wbgetentities":
            data = body.get("_sdc", {"entities": {}})
        else:
            data = {k: v for k, v in body.items() if k != "_sdc"}
        h.send(json.dumps(data).encode(), headers=[("Content-Type", "application/json")])
    Handler.behaviour = answer


def scrape_once(server, tmp_path, sdc=False):
    cfg = ScrapeConfig(api=server, categories=["Category:Odd"], depth=0, sdc=sdc)
    lines = []
    with Store(tmp_path / "db.duckdb") as store:
        report = Scraper(store, client(server, notify=lines.append), cfg).run()
        rows = {r["file_id"]: r for r in store.query("SELECT * FROM current_revisions")}
    return report, rows, lines


@pytest.mark.parametrize("body,message", [
    ({"batchcomplete": True, "query": "nope"}, "'query' is a str"),
    ({"batchcomplete": True, "query": {"pages": "x"}}, "'pages' is a str"),
    ({"query": {"pages": []}, "continue": "str"}, "'continue' is 'str'"),
    ({"query": {"pages": []}, "continue": {"gcmcontinue": ["a"]}}, "'continue' is"),
])
def test_malformed_response_is_one_line(server, tmp_path, body, message):
    serve_batch(body)
    cfg = ScrapeConfig(api=server, categories=["Category:Odd"], depth=0, sdc=False)
    with Store(tmp_path / "db.duckdb") as store:
        assert message in bounded(20, lambda: Scraper(store, client(server), cfg).run())


def test_malformed_pages_are_skipped_or_rejected_with_the_reason(server, tmp_path):
    pages = [{"pageid": "abc", "title": "File:a.jpg"}, {"pageid": 1e30, "title": "File:b.jpg"}, {"pageid": True},
             {"pageid": 7, "title": "File:7.jpg", "imageinfo": "x"},
             page(8, size="big"), page(9, extmetadata="x"), page(10, mime=["image/jpeg"])]
    serve_batch({"batchcomplete": True, "query": {"pages": pages}})
    report, rows, lines = scrape_once(server, tmp_path)
    assert report.finished and report.accepted == 0
    assert sum("malformed pageid" in ln for ln in lines) == 3
    assert set(rows) == {"commons:7", "commons:8", "commons:9", "commons:10"}
    assert "malformed imageinfo" in rows["commons:7"]["reason"]
    assert "malformed size 'big'" in rows["commons:8"]["reason"]
    assert "no licence fields" in rows["commons:9"]["reason"]
    assert "not a raster image" in rows["commons:10"]["reason"]


@pytest.mark.parametrize("entity", [
    {"statements": "x"},
    {"statements": {"P6216": "x"}},
    {"statements": {"P6216": ["x"]}},
    {"statements": {"P6216": [{"mainsnak": "x"}]}},
    {"statements": {"P6216": [{"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": "Q19652"}}},
                               "qualifiers": "x"}]}},
])
def test_garbled_sdc_rejects_never_crashes(server, tmp_path, entity):
    serve_batch({"batchcomplete": True, "query": {"pages": [page(11)]}, "_sdc": {"entities": {"M11": {"id": "M11", **entity}}}})
    report, rows, _lines = scrape_once(server, tmp_path, sdc=True)
    assert report.finished and rows["commons:11"]["status"] == "rejected" and "garbled" in rows["commons:11"]["reason"]


def test_sdc_entities_of_the_wrong_type_is_one_line(server, tmp_path):
    serve_batch({"batchcomplete": True, "query": {"pages": [page(12)]}, "_sdc": {"entities": ["x"]}})
    cfg = ScrapeConfig(api=server, categories=["Category:Odd"], depth=0, sdc=True)
    with Store(tmp_path / "db.duckdb") as store:
        assert "'entities' is a list" in bounded(20, lambda: Scraper(store, client(server), cfg).run())


@pytest.mark.parametrize("depth", [0, 2])
def test_category_that_does_not_exist_is_a_warning(server, tmp_path, depth):
    def empty(h, q):
        body = {"batchcomplete": True, "query": {"categorymembers": []} if q.get("list") else {}}
        h.send(json.dumps(body).encode(), headers=[("Content-Type", "application/json")])
    Handler.behaviour = empty
    lines = []
    cfg = ScrapeConfig(api=server, categories=["Category:Paintngs by nobody"], depth=depth, sdc=False)
    with Store(tmp_path / "db.duckdb") as store:
        report = Scraper(store, client(server, notify=lines.append), cfg).run()
    assert report.finished and report.empty_roots == ["Category:Paintngs by nobody"]
    assert len(lines) == 1 and "Category:Paintngs by nobody has no files and no subcategories" in lines[0]


P6216_PD = {"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": "Q19652"}}}, "rank": "normal"}


@pytest.mark.parametrize("entity", [
    {"statements": {"P6216": [{"mainsnak": {"snaktype": "value", "datavalue": "Q19652"}}]}},
    {"statements": {"P6216": [{"mainsnak": {"snaktype": "value", "datavalue": None}}]}},
    {"statements": {"P275": [{"mainsnak": {"snaktype": ["value"]}}]}},
    {"statements": {"P6216": [{"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": ["Q19652"]}}}}]}},
    {"statements": {"P6216": [{**P6216_PD, "rank": ["normal"]}]}},
    {"statements": {"P6216": [{**P6216_PD, "qualifiers": {"P1001": 5}}]}},
    {"statements": {"P6216": [{**P6216_PD, "qualifiers": {"P518": [{"snaktype": "value", "datavalue": "x"}]}}]}},
    {"statements": {"P6216": [P6216_PD]}, "labels": {"en": {"language": "en", "value": 5}}},
    "M11",   # the entity itself
], ids=["datavalue", "datavalue-null", "snaktype", "item-id", "rank", "qualifiers", "qualifier-datavalue", "caption", "entity"])
def test_garbled_sdc_value_rejects_its_file_and_the_scrape_goes_on_and_reruns(server, tmp_path, entity):
    """(issue 25, minor) These crashed every rerun (AttributeError/TypeError in the decision or the
    captions), or (an entity that is not an object) were read as "no SDC" and decided without it."""
    other = page(12, extmetadata={**PD_EM, "License": {"value": "cc-by-sa-4.0"}})   # decided after it, without SDC
    ent = entity if isinstance(entity, str) else {"id": "M11", **entity}
    serve_batch({"batchcomplete": True, "query": {"pages": [page(11), other]}, "_sdc": {"entities": {"M11": ent}}})
    for run in range(2):
        report, rows, _lines = scrape_once(server, tmp_path, sdc=True)
        assert report.finished and set(rows) == {"commons:11", "commons:12"}
        assert rows["commons:11"]["status"] == "rejected" and rows["commons:11"]["sha256"] is None
        assert rows["commons:11"]["reason"].startswith("rejected: garbled Structured Data in the API response (")
        assert "not public domain or CC0" in rows["commons:12"]["reason"]
        assert report.unchanged == (2 if run else 0)     # the rerun: nothing new, nothing lost
