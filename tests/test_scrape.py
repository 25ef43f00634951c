"""`pdd scrape` against the real local mirror (stages/scrape/mirror.py): fixture walk, rights,
faults, resume, revisions, labels, path safety. No mocks: real requests, real HTTP, real DuckDB."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, engine_env
from scrape_helpers import EMAIL, FIXTURE_ROOT, SYNTH_ROOT, client, digest, pdd_cmd, scrape
from pdd import cli
from pdd.core.errors import PddError
from pdd.source.commons.http import CommonsClient, user_agent, validate_email
from pdd.source.commons.mirror import Catalogue, MirrorServer
from pdd.rights.commons import decide
from pdd.source.store import Store, loads_json

REPO = Path(__file__).resolve().parents[1]
# The recorded-shape Commons fixture lives in ../shared (reference material, never copied in): skip without it.
pytestmark = pytest.mark.skipif(not (FIXTURES / "index.json").exists(),
                                reason="needs ../shared/fixtures/commons (recorded-shape MediaWiki responses)")
INDEX = json.loads((FIXTURES / "index.json").read_text()) if (FIXTURES / "index.json").exists() else {"files": {}, "responses": []}
PID = {k: f["pageid"] for k, f in INDEX["files"].items()}
ACCEPT = {"F1", "F2", "F4", "F5", "F7", "F10", "F12"}
REJECT = {
    # a PD portrait naming its sitter: the likeness screen rejects it
    "F11": "rejected: likeness: 'person named: anna roos' in title 'File:Maarten van Oosterwijk - Portrait of Anna Roos "
           "(1870).jpg'",
    "F3": "rejected: not a raster image (application/pdf, OFFICE)",
    "F6": "rejected: licence cc-by-sa-4.0 is not public domain or CC0",
    "F8": "rejected: no licence fields in extmetadata (License and LicenseShortName missing)",
    "F9": "rejected: not a raster image (image/svg+xml, DRAWING)",
}


@pytest.fixture
def fixture_server():
    with MirrorServer(Catalogue.from_fixture(FIXTURES)) as srv:
        yield srv


def current(db: Path) -> dict:
    with Store(db, read_only=True) as store:
        return {r["file_id"]: r for r in store.query("SELECT * FROM current_revisions")}


# ---- the fixture walk ------------------------------------------------------------------------------
@pytest.mark.parametrize("transform_limit", [50, 2], ids=["one-response-batches", "iicontinue"])
def test_fixture_walk_accepts_exactly_the_expected_files(tmp_path, transform_limit):
    with MirrorServer(Catalogue.from_fixture(FIXTURES), transform_limit=transform_limit) as srv:
        report, c = scrape(srv.api_url, tmp_path / "pdd.duckdb")
        log = srv.requests()
    rows = current(tmp_path / "pdd.duckdb")
    assert set(rows) == {f"commons:{p}" for p in PID.values()}  # 12 files, each once (cycle + diamond + dedupe)
    assert {k for k, p in PID.items() if rows[f"commons:{p}"]["status"] == "accepted"} == ACCEPT
    for key, reason in REJECT.items():
        row = rows[f"commons:{PID[key]}"]
        assert (row["status"], row["reason"]) == ("rejected", reason)
        assert row["sha256"] is None and row["blob_path"] is None  # no bytes stored for rejected files
    assert report.finished and report.duplicates == 2 and report.categories == 3
    with Store(tmp_path / "pdd.duckdb", read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM revisions")[0]["n"] == 12
        blobs = {p.name for p in store.blob_dir.iterdir()}
    assert blobs == {rows[f"commons:{PID[k]}"]["sha256"] for k in ACCEPT}
    # F5 is CC0 although Copyrighted=True; SDC agrees and is stored as evidence
    f5 = rows[f"commons:{PID['F5']}"]
    assert f5["licence_kind"] == "cc0" and "SDC agrees" in f5["reason"]
    ev = json.loads(f5["licence_evidence"])
    assert ev["sdc"]["P275"] == ["Q6938433"] and ev["extmetadata"]["License"] == "cc0"
    # F4: only the 960px thumb (never the 443 MB TIFF); F12 (800 px < 960): thumburl == url
    f4 = rows[f"commons:{PID['F4']}"]
    assert (f4["width"], f4["height"], f4["mime"]) == (960, 720, "image/jpeg")
    media_paths = [e["path"] for e in log if e["kind"] == "media"]
    # every file whose licence is accepted is fetched (the marks and likeness screen decides on the stored
    # record after that, so F11's thumbnail is fetched, then the file rejected and its bytes not kept)
    assert len(media_paths) == len(ACCEPT) + 1
    assert not any(p.endswith(".tif") or p.endswith(".pdf") or p.endswith(".svg") for p in media_paths)
    if transform_limit == 2:
        assert any("iicontinue" in e["params"] for e in log)
    # etiquette on every API request
    api = [e for e in log if e["kind"] == "api"]
    assert all(e["params"].get("maxlag") == "5" for e in api)
    assert all(e["user_agent"] == user_agent(EMAIL) for e in log)
    assert all("gzip" in e["accept_encoding"] and e["gzip"] for e in api)
    gen = [e for e in api if e["params"].get("generator")]
    sdc = [e for e in api if e["params"].get("action") == "wbgetentities"]
    assert all(e["params"]["gcmlimit"] == "500" and e["params"]["gcmtype"] == "subcat|file" for e in gen)
    assert all(len(e["params"]["ids"].split("|")) <= 50 for e in sdc)
    # one listing per category (subcategories and files together) + one SDC call for the 3 categories' files
    # (with 2 thumbnails in a batch's first response, each category needs one iicontinue page more)
    assert (len(gen), len(sdc)) == ((3, 1) if transform_limit == 50 else (6, 1))
    assert len(api) == len(gen) + len(sdc)


def test_fixture_provenance_labels_and_sdc(tmp_path, fixture_server):
    scrape(fixture_server.api_url, tmp_path / "pdd.duckdb")
    with Store(tmp_path / "pdd.duckdb", read_only=True) as store:
        rev = store.latest_revision(f"commons:{PID['F1']}")
        labels = store.labels_of(rev["revision_id"])
    prov = loads_json(rev["provenance"])
    assert prov["sha1"] == INDEX["files"]["F1"]["sha1"] and prov["original_size"] == INDEX["files"]["F1"]["size"]
    assert prov["descriptionurl"].startswith("https://commons.wikimedia.org/wiki/File:")
    assert prov["artist"] == "Maarten van Oosterwijk" and prov["date"] == "1862"
    caps = {(lb["lang"], lb["licence"]) for lb in labels if lb["field"] == "caption"}
    assert caps == {("en", "cc0"), ("nl", "cc0")}
    desc = [lb for lb in labels if lb["field"] == "description"]
    assert desc and all(lb["licence"] == "cc-by-sa" for lb in desc)


# ---- rights: fail closed ------------------------------------------------------------------------------
def _em(**fields):
    return {k: {"value": v, "source": "commons-desc-page"} for k, v in fields.items()}


PD = dict(License="pd", LicenseShortName="Public domain", UsageTerms="Public domain", AttributionRequired="false",
          Copyrighted="False", Restrictions="")


@pytest.mark.parametrize("change,ok", [
    ({}, True),
    ({"Copyrighted": "True"}, False),
    ({"AttributionRequired": "true"}, False),
    ({"LicenseShortName": "CC BY-SA 4.0"}, False),
    ({"License": "cc-by-4.0"}, False),
    ({"License": "<b>garbled"}, False),
    ({"Restrictions": "trademarked"}, False),
    ({"License": None}, False),
    ({"AttributionRequired": None}, False),
])
def test_extmetadata_decisions_fail_closed(change, ok):
    fields = {**PD, **change}
    d = decide(_em(**{k: v for k, v in fields.items() if v is not None}))
    assert d.accepted is ok
    assert d.reason.startswith("accepted" if ok else "rejected")


def test_sdc_conflict_rejects_and_agreement_accepts():
    sdc_f6 = json.loads((FIXTURES / "api" / "sdc_wbgetentities.json").read_text())["entities"]
    assert decide(_em(**PD), sdc_f6["M61234567"]).accepted
    d = decide(_em(**PD), sdc_f6["M79678901"])  # CC BY-SA statements on a "pd" page: conflict
    assert not d.accepted and "conflicting" in d.reason
    assert decide(_em(**PD), {"id": "M1", "missing": ""}).accepted  # no SDC yet: extmetadata decides


# ---- faults: the final database equals the fault-free run's --------------------------------------------
@pytest.fixture(scope="module")
def synth_server():
    with MirrorServer(Catalogue.synthetic(150, seed=1), timeout_delay=2.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def synth_baseline(synth_server, tmp_path_factory):
    db = tmp_path_factory.mktemp("baseline") / "pdd.duckdb"
    report, _ = scrape(synth_server.api_url, db, categories=[SYNTH_ROOT], thumb_width=512)
    assert report.finished and report.accepted > 100
    return digest(db)


FAULT_CASES = [("429", "api"), ("503", "media"), ("maxlag", "api"), ("ratelimited", "api"), ("timeout", "api"),
               ("reset", "api"), ("reset", "media"), ("truncate", "api"), ("truncate", "media"), ("badjson", "api"),
               ("badsha1", "media")]


@pytest.mark.parametrize("kind,on", FAULT_CASES, ids=[f"{k}-{o}" for k, o in FAULT_CASES])
def test_fault_gives_the_same_database(tmp_path, synth_server, synth_baseline, kind, on):
    srv = synth_server
    srv.faults.clear()
    start = srv.counts[on]
    srv.inject(kind, on=on, at=[start + 2, start + 7], retry_after=1)
    report, c = scrape(srv.api_url, tmp_path / "pdd.duckdb", categories=[SYNTH_ROOT], thumb_width=512, client_kw={"timeout": 1.0})
    srv.faults.clear()
    assert report.finished and c.stats.retries >= 2
    assert digest(tmp_path / "pdd.duckdb") == synth_baseline
    log = srv.requests()
    hits = [i for i, e in enumerate(log) if e["fault"] == kind and e["n"] in (start + 2, start + 7) and e["kind"] == on]
    assert len(hits) == 2
    if kind in ("429", "503", "maxlag"):  # (ratelimited carries no Retry-After: plain backoff)
        for i in hits:  # the next request waited for Retry-After (server-side clock)
            assert log[i + 1]["t"] - log[i]["t"] >= 0.95, (kind, log[i + 1]["t"] - log[i]["t"])


def test_gives_up_with_a_clear_error_and_resumes(tmp_path, synth_server, synth_baseline):
    srv = synth_server
    srv.faults.clear()
    start = srv.counts["api"]
    srv.inject("503", on="api", at=list(range(start + 3, start + 20)), retry_after=0)
    with pytest.raises(PddError, match=r"gave up after 2 retries .*run the same command again to resume"):
        scrape(srv.api_url, tmp_path / "pdd.duckdb", categories=[SYNTH_ROOT], thumb_width=512, client_kw={"max_retries": 2})
    srv.faults.clear()
    report, _ = scrape(srv.api_url, tmp_path / "pdd.duckdb", categories=[SYNTH_ROOT], thumb_width=512)
    assert report.resumed and report.finished
    assert digest(tmp_path / "pdd.duckdb") == synth_baseline


def test_limit_then_continue(tmp_path, synth_server, synth_baseline):
    synth_server.faults.clear()
    db = tmp_path / "pdd.duckdb"
    r1, _ = scrape(synth_server.api_url, db, categories=[SYNTH_ROOT], thumb_width=512, limit=7)
    assert r1.accepted == 7 and not r1.finished
    r2, _ = scrape(synth_server.api_url, db, categories=[SYNTH_ROOT], thumb_width=512)
    assert r2.resumed and r2.finished
    assert digest(db) == synth_baseline  # nothing duplicated, nothing lost


# ---- kill -9 at random points over a 2,000-file catalogue -------------------------------------------------
def test_sigkill_at_random_points_then_resume(tmp_path):
    with MirrorServer(Catalogue.synthetic(2000, seed=7)) as srv:
        args = ["scrape", "--email", EMAIL, "--api", srv.api_url, "--category", SYNTH_ROOT, "--depth", "2", "--backoff", "0.01"]
        base_db = tmp_path / "base" / "pdd.duckdb"
        report, _ = scrape(srv.api_url, base_db, categories=[SYNTH_ROOT], thumb_width=512, depth=2)
        assert report.finished and report.seen == 2000
        want = digest(base_db)
        db = tmp_path / "killed" / "pdd.duckdb"
        rnd = random.Random(1234)
        kills = 0
        for _ in range(4):
            before = srv.counts["media"]
            proc = subprocess.Popen(pdd_cmd(*args, "--db", db), cwd=REPO, env=engine_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            target = before + rnd.randrange(20, 400)  # a random point in the download stream
            while srv.counts["media"] < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rnd.random() * 0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        assert kills >= 3
        done = subprocess.run(pdd_cmd(*args, "--db", db), cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "resumed" in done.stdout
    got = digest(db)
    assert got["accepted"] == want["accepted"]
    assert got["blobs"] == want["blobs"]
    assert got == want  # and the same revisions, labels, evidence: nothing duplicated or lost


# ---- one writer -------------------------------------------------------------------------------------------
def test_second_scraper_on_the_same_db_refuses(tmp_path):
    with MirrorServer(Catalogue.synthetic(300, seed=2), latency=0.05) as srv:
        db = tmp_path / "pdd.duckdb"
        args = ["scrape", "--email", EMAIL, "--api", srv.api_url, "--category", SYNTH_ROOT, "--db", db]
        first = subprocess.Popen(pdd_cmd(*args), cwd=REPO, env=engine_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not srv.counts["api"] and time.monotonic() < deadline:
                time.sleep(0.02)
            assert first.poll() is None
            second = subprocess.run(pdd_cmd(*args), cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=60)
        finally:
            first.kill()
            first.wait()
    assert second.returncode == 2
    assert "in use by another pdd process" in second.stderr and len(second.stderr.strip().splitlines()) == 1


# ---- email / User-Agent -------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["someone@example.com", "a@b.example.org", "x@test.invalid", "not-an-email", "", "me@localhost"])
def test_fake_or_missing_email_is_refused(address, tmp_path, capsys):
    with pytest.raises(PddError):
        validate_email(address)
    assert cli.main(["scrape", "--email", address, "--api", "http://127.0.0.1:9/w/api.php", "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "email" in capsys.readouterr().err
    assert not (tmp_path / "x.duckdb").exists()


def test_user_agent_format():
    ua = user_agent("someone@pd-diffusion.org")
    assert ua.startswith("pdd/") and "(https://github.com/pd-diffusion/pd-diffusion; someone@pd-diffusion.org)" in ua
    assert " python-requests/" in ua
    with pytest.raises(SystemExit):
        cli.main(["scrape"])  # --email is required


# ---- revisions, label tool, hosts ----------------------------------------------------------------------------
def test_rescrape_records_new_revision_only_for_changed_files(tmp_path, fixture_server):
    db = tmp_path / "pdd.duckdb"
    scrape(fixture_server.api_url, db)
    media_before = fixture_server.counts["media"]
    f7 = fixture_server.catalogue.files[PID["F7"]]
    info = json.loads(json.dumps(f7.imageinfo))
    info["extmetadata"]["ImageDescription"]["value"] = '<span lang="en">Polder with cattle, revised description.</span>'
    f7.imageinfo = info
    report, _ = scrape(fixture_server.api_url, db)
    assert report.finished and report.run_id == 2 and not report.resumed
    rows = current(db)
    assert rows[f"commons:{PID['F7']}"]["rev_no"] == 2
    assert all(r["rev_no"] == 1 for fid, r in rows.items() if fid != f"commons:{PID['F7']}")
    assert report.unchanged == 11 and fixture_server.counts["media"] == media_before + 1


def test_label_refetches_as_new_revision(tmp_path, fixture_server, monkeypatch, capsys):
    db = tmp_path / "pdd.duckdb"
    scrape(fixture_server.api_url, db)
    pid = PID["F7"]
    f7 = fixture_server.catalogue.files[pid]
    f7.sdc = {"pageid": pid, "ns": 6, "title": f7.title, "type": "mediainfo", "id": f"M{pid}",
              "labels": {"en": {"language": "en", "value": "Cattle grazing in a polder"}}, "descriptions": {}, "statements": {}}
    media_before = fixture_server.counts["media"]
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    rc = cli.main(["label", "--email", EMAIL, "--api", fixture_server.api_url, "--db", str(db), "--thumb-width", "960", "--file", str(pid)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "https://commons.wikimedia.org/wiki/File:" in out and "stored revision" in out
    with Store(db, read_only=True) as store:
        rev = store.latest_revision(f"commons:{pid}")
        caps = [lb for lb in store.labels_of(rev["revision_id"]) if lb["field"] == "caption"]
    assert rev["rev_no"] == 2 and rev["status"] == "accepted"
    assert [(c["text"], c["licence"]) for c in caps] == [("Cattle grazing in a polder", "cc0")]
    assert fixture_server.counts["media"] == media_before  # same thumbnail: the stored blob is reused


def test_thumbnail_from_an_unconfigured_host_is_never_fetched(tmp_path, fixture_server):
    f7 = fixture_server.catalogue.files[PID["F7"]]
    info = json.loads(json.dumps(f7.imageinfo))
    info["thumburl"] = "http://203.0.113.9/wikipedia/commons/thumb/x.jpg"
    f7.imageinfo = info
    scrape(fixture_server.api_url, tmp_path / "pdd.duckdb")
    row = current(tmp_path / "pdd.duckdb")[f"commons:{PID['F7']}"]
    assert row["status"] == "rejected" and "not one of the configured hosts" in row["reason"]
    assert row["sha256"] is None


# ---- hostile titles never write outside the data folder ---------------------------------------------------------
def test_hostile_titles_stay_inside_the_data_folder(tmp_path):
    titles = ["../../../escape.jpg", "a/b/../../c.jpg", "nul\0byte.jpg", ("ж" * 150) + ".jpg", "日本の風景画.jpg",
              "لوحة زيتية.jpg", "/etc/passwd.jpg", "..%2F..%2Fencoded.jpg"]
    assert len(titles[3].encode("utf-8")) > 300
    work = tmp_path / "work"
    work.mkdir()
    before = {p for p in tmp_path.rglob("*")}
    with MirrorServer(Catalogue.synthetic(20, seed=3, titles=titles)) as srv:
        db = work / "data" / "pdd.duckdb"
        old = os.getcwd()
        os.chdir(work)
        try:
            report, _ = scrape(srv.api_url, db, categories=[SYNTH_ROOT], thumb_width=512)
        finally:
            os.chdir(old)
    assert report.finished and report.seen == 20
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p == work / "data" or (work / "data") in p.parents for p in created), created - {work / "data"}
    blobs = [p.name for p in (work / "data" / "blobs").iterdir()]
    assert blobs and all(len(n) == 64 and all(ch in "0123456789abcdef" for ch in n) for n in blobs)
    with Store(db, read_only=True) as store:
        stored = {r["title"] for r in store.query("SELECT title FROM files")}
    assert {f"File:{t}" for t in titles} <= stored
