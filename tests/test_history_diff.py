"""Issue 12: dataset versions you can diff like commits (diff, show/list, textconv, blame, exclusions)."""
import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pdd import diff as pdiff
from pdd import history, snapshot
from pdd.core.errors import PddError
from pdd.rights import audit
from pdd.rights.text import LicenceDecision
from pdd import exclusions
from pdd.source import pin
from pdd.source.store import FileRecord, Label, Store
from conftest import BIN, pdd_cli, sh


def record_of(row: dict, **change) -> FileRecord:
    """The store record a snapshot row was pinned from (pinning it again gives the same row)."""
    source_id, external_id = row["file_id"].split(":", 1)
    rec = dict(source_id=source_id, external_id=external_id, title=row["title"], status="accepted",
               reason=row["licence_reason"], data=row["image"], source_sha1=row["source_sha1"], mime=row["mime"],
               width=row["width"], height=row["height"], source_url=row["source_url"],
               provenance=json.loads(row["provenance"]), labels=[Label(**lb) for lb in json.loads(row["labels"])],
               licence=LicenceDecision(True, row["licence_kind"], row["licence_reason"], json.loads(row["licence_evidence"])))
    rec.update(change)
    return FileRecord(**rec)


def reencode(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "JPEG", quality=40)
    return out.getvalue()


@pytest.fixture(scope="module")
def versions(tmp_path_factory, generated_snapshot):
    """Two real pins of a pinned snapshot (the generated one: 57 rows, sources mus and web, 45 cc0 and
    12 pd; tests/snapshot_factory.py) through a fresh store: v1 (= that snapshot) and v2 with edits."""
    tmp = tmp_path_factory.mktemp("versions")
    base = generated_snapshot.path
    rows = [r for batch in snapshot.iter_batches(base) for r in batch]
    ids = [r["file_id"] for r in rows]
    excl = tmp / "exclusions.tsv"
    with Store(tmp / "db.duckdb") as store:
        for source in ("mus", "web"):
            store.ensure_source(source, "folder", f"file:///{source}")
        store.record_batch([record_of(r) for r in rows])
        v1 = pin.pin(store, "v1", tmp / "s", exclusions.read(excl))
        pin.pin(store, base.stem, tmp / "base", exclusions.read(excl))  # the same rows under the original's name
        r = {fid: row for fid, row in zip(ids, rows)}
        caption, image, licence, rejected, excluded = ids[10], ids[20], ids[30], ids[40], ids[50]
        assert r[licence]["licence_kind"] == "cc0" and excluded.startswith("web:") and ids[0] == "mus:0000"
        title_label = [Label(**lb) for lb in json.loads(r[caption]["labels"])]
        title_label = [Label(lb.field, "Edited caption" if lb.field == "title" else lb.text, lb.licence, lb.lang, lb.source)
                       for lb in title_label]
        new_bytes = reencode(r[image]["image"])
        store.record_batch([
            record_of(r[caption], title="Edited caption", labels=title_label),
            record_of(r[image], data=new_bytes),
            record_of(r[licence], licence=LicenceDecision(True, "cc-by-sa", r[licence]["licence_reason"],
                                                          json.loads(r[licence]["licence_evidence"]))),
            record_of(r[rejected], status="rejected", reason="rejected: licence withdrawn by the museum", data=None,
                      licence=LicenceDecision(False, "unknown", "rejected: licence withdrawn by the museum", {"note": "withdrawn"})),
            record_of(r[ids[0]], external_id="new-1"),
        ])
        exclusions.add(excl, excluded, "takedown request #7", "2026-01-02", store=store)
        v2 = pin.pin(store, "v2", tmp / "s", exclusions.read(excl))
    return dict(tmp=tmp, s=tmp / "s", db=tmp / "db.duckdb", excl=excl, v1=v1, v2=v2, ids=ids, caption=caption,
                image=image, licence=licence, rejected=rejected, excluded=excluded, added="mus:new-1", new_bytes=new_bytes,
                old_image=r[image]["image"], base=base)


def pdd(args, cwd, check=False):
    return pdd_cli(args, cwd, check=check)  # this checkout's CLI


def test_store_round_trip_reproduces_a_pinned_snapshot(versions):
    base = versions["base"]
    assert versions["v1"]["content_hash"] == snapshot.read_meta(base)["pdd.content_hash"]
    # an (empty) exclusion list changes nothing: the same bytes as the snapshot pinned by the importer's store
    assert (versions["tmp"] / "base" / base.name).read_bytes() == base.read_bytes()
    assert "excluded" not in versions["v1"] and versions["v2"]["excluded"] == 1
    assert snapshot.read_meta(versions["s"] / "v2.parquet")["pdd.excluded"] == "1"


def test_diff_summary_and_every_detail_line(versions):
    v = versions
    d = pdiff.diff("v1", "v2", v["s"])
    assert d["counts"] == {"added": 1, "removed": 2, "changed": 3, "unchanged": 52}
    assert d["added"] == ["mus:new-1"] and d["removed"] == sorted([v["rejected"], v["excluded"]])
    assert d["changed_by_group"] == {"caption/labels": 1, "licence": 1, "image bytes": 1, "dimensions": 0,
                                     "source URL": 0, "evidence": 0, "other": 0}
    assert d["licence_transitions"] == [{"from": "cc0", "to": "cc-by-sa", "count": 1, "regression": True}]
    assert d["rights_regression"] is True and d["equal"] is False
    by_id = {c["file_id"]: c for c in d["changed"]}
    assert by_id[v["caption"]]["fields"] == ["rev_no", "title", "labels"]
    assert by_id[v["image"]]["fields"] == ["rev_no", "sha256", "size"]
    assert by_id[v["licence"]]["fields"] == ["rev_no", "licence_kind"]
    proc = pdd(["diff", "v1", "v2", "--out-dir", str(v["s"])], v["tmp"])
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"--- v1  (snapshot name, 57 rows, {v['v1']['content_hash'][:12]})")
    assert lines[1].startswith(f"+++ v2  (snapshot name, 56 rows, {v['v2']['content_hash'][:12]})")
    detail = {v["caption"]: f"~ {v['caption']}  rev 1 -> 2  caption/labels (title, labels)",
              v["image"]: f"~ {v['image']}  rev 1 -> 2  image bytes (sha256, size)",
              v["licence"]: f"~ {v['licence']}  rev 1 -> 2  licence (licence_kind) cc0 -> cc-by-sa"}
    assert lines[2:] == [
        *(f"- {fid}" for fid in sorted([v["rejected"], v["excluded"]])),
        "+ mus:new-1",
        *(detail[fid] for fid in sorted(detail)),
        "1 added, 2 removed, 3 changed, 52 unchanged",
        "changed by field: caption/labels 1, licence 1, image bytes 1, dimensions 0, source URL 0, evidence 0, other 0",
        "licence transitions:",
        "  cc0 -> cc-by-sa: 1   <-- RIGHTS REGRESSION",
        "!!! RIGHTS REGRESSION: 1 row(s) moved to a licence outside ['cc0', 'pd'] (the audit will refuse this "
        "snapshot; check the licence decisions before building)",
    ]
    stat = pdd(["diff", "v1", "v2", "--out-dir", str(v["s"]), "--stat"], v["tmp"])
    assert stat.returncode == 1 and stat.stdout.splitlines()[2:] == lines[2 + 6:]
    js = pdd(["diff", "v1", str(v["s"] / "v2.parquet"), "--out-dir", str(v["s"]), "--json"], v["tmp"])
    assert js.returncode == 1 and json.loads(js.stdout)["counts"] == d["counts"]
    same = pdd(["diff", "v1", str(v["base"]), "--out-dir", str(v["s"])], v["tmp"])
    assert same.returncode == 0 and "0 added, 0 removed, 0 changed, 57 unchanged" in same.stdout
    # the other way round: removed <-> added, cc-by-sa -> cc0 is no regression
    back = pdiff.diff("v2", "v1", v["s"])
    assert back["counts"] == {"added": 2, "removed": 1, "changed": 3, "unchanged": 52} and not back["rights_regression"]


def test_join_and_except_implementations_agree(versions, tmp_path):
    a, b = versions["s"] / "v1.parquet", versions["s"] / "v2.parquet"
    for x, y in ((a, b), (b, a), (a, a)):
        assert pdiff.diff_paths(x, y) == pdiff.diff_paths_except(x, y)


def test_show_list_textconv_blame(versions):
    v = versions
    info = history.info(v["s"] / "v2.parquet", v["db"])
    # v1: 45 cc0 + 12 pd; v2: two cc0 rows gone, one cc0 -> cc-by-sa, one pd row added (a copy of mus:0000)
    assert info["rows"] == 56 and info["licences"] == {"cc-by-sa": 1, "cc0": 42, "pd": 13}
    assert info["sources"] == {"mus": 46, "web": 10}
    assert info["excluded"] == 1 and info["created_from"] == "store" and info["content_hash"] == v["v2"]["content_hash"]
    assert [(i["source_id"], i["uri"], i["rows"]) for i in info["imports"]] == [("mus", "file:///mus", 46),
                                                                              ("web", "file:///web", 10)]
    out = pdd(["snapshot", "list", "--out-dir", str(v["s"]), "--db", str(v["db"])], v["tmp"], check=True).stdout.splitlines()
    assert [ln.split()[0] for ln in out] == ["v1", "v2"] and "56 rows  excluded 1" in out[1]
    text = pdd(["snapshot", "textconv", str(v["s"] / "v2.parquet")], v["tmp"], check=True).stdout.splitlines()
    assert len(text) == 57 and text[0].startswith("# pdd snapshot v2 ") and "image" not in json.loads(text[1])
    assert json.loads(text[1]) == {k: json.loads(text[1])[k] for k in snapshot.META_COLUMNS}
    with Store(v["db"], read_only=True) as store:
        b = history.blame(store, v["excluded"], exclusions.read(v["excl"]))
        assert [(e["snapshot"], e["event"]) for e in b["events"]] == [("v1", "entered"), ("v2", "left")]
        assert b["events"][1]["why"] == "excluded on 2026-01-02: takedown request #7"
        b = history.blame(store, v["rejected"])
        assert b["events"][1]["why"] == "rev 2 rejected: rejected: licence withdrawn by the museum"
        b = history.blame(store, v["caption"])
        assert b["events"][1] == {"snapshot": "v2", "event": "changed", "rev_no": 2, "why": "rev 1 -> 2 (title)"}
        b = history.blame(store, "mus:new-1")
        assert [(e["snapshot"], e["event"]) for e in b["events"]] == [("v2", "entered")]
    out = pdd(["snapshot", "blame", v["excluded"], "--db", str(v["db"]), "--exclusions", str(v["excl"])], v["tmp"], check=True)
    assert "left    v2: excluded on 2026-01-02" in out.stdout


def test_exclusions_file_pin_and_audit(versions, tmp_path):
    v = versions
    text = v["excl"].read_text()
    assert text == f"file_id\treason\tdate\n{v['excluded']}\ttakedown request #7\t2026-01-02\n"
    with Store(v["db"], read_only=True) as store:
        with pytest.raises(PddError, match="not a file in the store"):
            exclusions.add(tmp_path / "e.tsv", "mus:nope", "x", "2026-01-01", store=store)
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(v["s"] / "v1.parquet", ["pd", "cc0"], exclusions_path=v["excl"])
    assert f"{v['excluded']} (excluded on 2026-01-02: takedown request #7)" in str(err.value)
    # v2 has the excluded id left out (it fails only for its cc-by-sa row)
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(v["s"] / "v2.parquet", ["pd", "cc0"], exclusions_path=v["excl"])
    assert v["licence"] in str(err.value) and v["excluded"] not in str(err.value)
    # CLI: sorted, deterministic, one line per id; an unknown id is a one-line error, exit 2
    e = tmp_path / "ex.tsv"
    for fid in (v["ids"][5], v["ids"][3], v["ids"][5]):
        pdd(["exclude", fid, "--reason", "opt-out", "--date", "2026-02-01", "--db", str(v["db"]), "--exclusions", str(e)],
            tmp_path, check=True)
    assert e.read_text().splitlines()[1:] == [f"{v['ids'][3]}\topt-out\t2026-02-01", f"{v['ids'][5]}\topt-out\t2026-02-01"]
    bad = pdd(["exclude", "mus:nope", "--reason", "x", "--db", str(v["db"]), "--exclusions", str(e)], tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "mus:nope: not a file in the store" in bad.stderr


def _git_repo(path, snap_rel="data/snapshots/snap.parquet"):
    path.mkdir()
    sh(["git", "init", "-q", "-b", "main"], path)
    (path / "params.yaml").write_text(f"snapshot:\n  name: snap\n  path: {snap_rel}\naudit:\n  allowed_licences: [pd, cc0]\n")
    (path / "data/snapshots").mkdir(parents=True)
    return path


def test_diff_git_revisions_committed_in_git(versions, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    target = repo / "data/snapshots/snap.parquet"
    (repo / ".gitattributes").write_text("data/snapshots/*.parquet diff=pdd\n")
    for tag in ("v1", "v2"):
        shutil.copy(versions["s"] / f"{tag}.parquet", target)
        sh(f"git add -A && git commit -q -m {tag} && git tag {tag}", repo)
    sh(["git", "commit", "-q", "--allow-empty", "-m", "later"], repo)
    proc = pdd(["diff", "v1", "HEAD"], repo)
    assert proc.returncode == 1, proc.stderr
    assert "(git v1 (" in proc.stdout and "1 added, 2 removed, 3 changed, 52 unchanged" in proc.stdout
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""  # nothing checked out or written
    # the textconv driver: git diff shows rows
    sh(["git", "config", "diff.pdd.textconv", f"{BIN / 'pdd'} snapshot textconv"], repo)
    gd = sh(["git", "diff", "v1", "v2", "--", "data/snapshots/snap.parquet"], repo).stdout
    assert f'-{{"external_id":"{versions["excluded"].split(":")[1]}"' in gd and '+{"external_id":"new-1"' in gd
    assert "Binary files" not in gd


def test_diff_git_revisions_tracked_by_dvc_with_local_remote(versions, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    remote = tmp_path / "remote"
    sh("dvc init -q && dvc config core.analytics false && dvc remote add -q -d local " + str(remote), repo)
    target = repo / "data/snapshots/snap.parquet"
    for tag in ("v1", "v2"):
        shutil.copy(versions["s"] / f"{tag}.parquet", target)
        sh(f"dvc add -q data/snapshots/snap.parquet && git add -A && git commit -q -m {tag} && git tag {tag} && dvc push -q", repo)
    assert sh(["git", "cat-file", "-e", "v1:data/snapshots/snap.parquet"], repo, check=False).returncode != 0  # not in git
    shutil.rmtree(repo / ".dvc/cache")      # only the remote has the bytes now
    target.unlink()                          # and the workspace has neither version
    proc = pdd(["diff", "v1", "v2"], repo)
    assert proc.returncode == 1, proc.stderr
    assert "dvc)" in proc.stdout and "1 added, 2 removed, 3 changed, 52 unchanged" in proc.stdout
    assert "cc0 -> cc-by-sa: 1   <-- RIGHTS REGRESSION" in proc.stdout
    assert not target.exists()


def test_bad_inputs_are_one_line_errors(versions, tmp_path):
    v = versions
    not_snap = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), not_snap)
    other_format = tmp_path / "fmt2.parquet"
    t = pq.read_table(v["s"] / "v1.parquet")
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, b"pdd.format": b"pdd-snapshot/2"}), other_format)
    repo = _git_repo(tmp_path / "repo")
    sh("git add params.yaml && git commit -q -m nosnap && git tag nosnap", repo)
    cases = [
        (["diff", "v1", str(not_snap), "--out-dir", str(v["s"])], "not a pdd snapshot (missing columns"),
        (["diff", "v1", "params.yaml", "--out-dir", str(v["s"])], "params.yaml: not a readable snapshot Parquet file"),
        (["diff", "v1", str(other_format), "--out-dir", str(v["s"])], "different schema versions"),
        (["diff", "nosnap", "HEAD"], "git revision nosnap: params.yaml names data/snapshots/snap.parquet, but that revision has no such snapshot"),
        (["diff", "nothing-like-this", "HEAD"], "nothing-like-this: not a snapshot file, a snapshot name in data/snapshots, or a git revision"),
    ]
    for args, message in cases:
        proc = pdd(args, repo)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)
    sh("git rm -q --cached params.yaml && git commit -q -m np && git tag noparams", repo)
    proc = pdd(["diff", "noparams", "HEAD"], repo)
    assert proc.returncode == 2 and "git revision noparams: has no params.yaml" in proc.stderr


def test_blame_along_git_revisions_committed_in_git(versions, tmp_path):
    """`pdd snapshot blame FILE_ID --git [RANGE]`: the build snapshot params.yaml names at each commit,
    read from git without a checkout; a takedown at the end (exclude, pin --from, params.yaml -> new file)."""
    v = versions
    repo = _git_repo(tmp_path / "repo")
    snap = repo / "data/snapshots/snap.parquet"
    excl = repo / "data/exclusions.tsv"
    shutil.copy(v["s"] / "v1.parquet", snap)
    excl.write_text("file_id\treason\tdate\n")
    sh("git add -A && git commit -q -m 'pin v1' && git tag v1", repo)
    (repo / "README.md").write_text("not the snapshot\n")
    sh("git add -A && git commit -q -m 'docs only'", repo)
    shutil.copy(v["s"] / "v2.parquet", snap)
    shutil.copy(v["excl"], excl)
    sh("git add -A && git commit -q -m 'pin v2' && git tag v2", repo)
    # the takedown workflow, no store in the repository: exclude, derive a new snapshot, point params.yaml at it
    pdd(["exclude", v["caption"], "--reason", "takedown request #8", "--date", "2026-02-03"], repo, check=True)
    pdd(["snapshot", "pin", "snap-t1", "--from", "snap"], repo, check=True)
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("snap.parquet", "snap-t1.parquet"))
    sh("git add -A && git commit -q -m 'take down one caption' && git tag t1", repo)
    sha = {t: sh(["git", "rev-parse", t], repo).stdout.strip() for t in ("v1", "v2", "t1")}

    def blame(fid, *extra):
        proc = pdd(["snapshot", "blame", fid, "--git", *extra, "--json"], repo, check=True)
        return json.loads(proc.stdout)

    def story(b):
        return [(e["event"], e["commit"], e["snapshot"]) for e in b["events"]]

    b = blame(v["excluded"])
    assert (b["revisions"], b["snapshot_versions"]) == (4, 3)   # 4 commits, 3 distinct snapshot files read
    assert story(b) == [("entered", sha["v1"], "v1"), ("left", sha["v2"], "v2")]
    assert b["events"][0]["why"].startswith("accepted cc0: ") and b["events"][0]["evidence"]
    assert b["events"][1]["why"] == "excluded on 2026-01-02: takedown request #7"
    assert b["present_at_end"] is False and b["unavailable"] == []

    b = blame(v["licence"])
    assert story(b) == [("entered", sha["v1"], "v1"), ("changed", sha["v2"], "v2")]
    assert b["events"][1]["fields"] == ["rev_no", "licence_kind"]
    assert b["events"][1]["why"].startswith("rev 1 -> 2  licence (licence_kind) cc0 -> cc-by-sa (decision: ")
    assert b["present_at_end"] is True

    b = blame(v["caption"])
    assert story(b) == [("entered", sha["v1"], "v1"), ("changed", sha["v2"], "v2"), ("left", sha["t1"], "snap-t1")]
    assert b["events"][1]["why"] == "rev 1 -> 2  caption/labels (title, labels)"
    assert b["events"][2]["why"] == "excluded on 2026-02-03: takedown request #8"
    assert b["events"][2]["path"] == "data/snapshots/snap-t1.parquet"

    # a row the store rejected: the snapshot alone cannot say why; the store (--db) can
    b = blame(v["rejected"])
    assert story(b)[1] == ("left", sha["v2"], "v2") and b["events"][1]["why"].startswith("not in the snapshot params.yaml names")
    b = json.loads(pdd(["snapshot", "blame", v["rejected"], "--git", "--json", "--db", str(v["db"])], repo, check=True).stdout)
    assert b["events"][1]["why"] == "rev 2 rejected: rejected: licence withdrawn by the museum (store)"

    assert story(blame(v["added"])) == [("entered", sha["v2"], "v2")]
    # a range starts from its lower bound's snapshot: the file was already there, so it only left
    assert story(blame(v["excluded"], "v1..HEAD")) == [("left", sha["v2"], "v2")]
    assert story(blame(v["caption"], "v2..t1")) == [("left", sha["t1"], "snap-t1")]

    text = pdd(["snapshot", "blame", v["caption"], "--git"], repo, check=True).stdout.splitlines()
    assert text[0] == f"file {v['caption']}  (build snapshot along git HEAD, first parent: 4 revision(s), 3 snapshot version(s))"
    assert text[-2] == (f"  left    {sha['t1'][:12]} 2026-01-01 'take down one caption'  snap-t1 "
                        f"({snapshot.read_meta(repo / 'data/snapshots/snap-t1.parquet')['pdd.content_hash'][:12]}): "
                        "excluded on 2026-02-03: takedown request #8")
    assert text[-1] == "  not in the build snapshot at the end of the range"
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""   # nothing checked out or written

    # bad input: one line, exit 2
    for args, message in [
        (["snapshot", "blame", v["caption"], "--git", "nosuch..HEAD"], "--git nosuch..HEAD: not a git revision or range in"),
        (["snapshot", "blame", v["caption"], "--git=--all"], "--git '--all': not a git revision or range"),
        (["snapshot", "blame", "mus:never", "--git"], "mus:never: in no build snapshot along --git HEAD (4 revision(s), 3 snapshot version(s) read)"),
    ]:
        proc = pdd(args, repo)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)
    outside = pdd(["snapshot", "blame", v["caption"], "--git"], tmp_path)
    assert outside.returncode == 2 and "not inside a git repository" in outside.stderr


def test_diff_of_two_pins_of_the_demo_snapshot(tmp_path):
    """Issue 12 on the real demo: the committed openclipart-0.18 snapshot recorded into a fresh store pins
    back to the same content hash (v1); v2 is pinned after an edited caption, re-encoded image bytes, a
    licence changed to cc-by-sa, a rejected row and an excluded row. Every number of the summary and
    every detail line is checked."""
    from conftest import REPO

    demo = REPO / "data/snapshots/openclipart-0.18.parquet"
    rows = [r for batch in snapshot.iter_batches(demo) for r in batch]
    n, ids = len(rows), [r["file_id"] for r in rows]
    r = dict(zip(ids, rows))
    caption, image, licence, rejected, excluded = ids[100], ids[2000], ids[3000], ids[4000], ids[5000]
    excl = tmp_path / "exclusions.tsv"
    with Store(tmp_path / "db.duckdb") as store:
        store.ensure_source("openclipart", "openclipart", "file:///usr/share/openclipart")
        store.record_batch([record_of(row) for row in rows])
        v1 = pin.pin(store, "v1", tmp_path / "s", exclusions.read(excl))
        assert v1["content_hash"] == snapshot.read_meta(demo)["pdd.content_hash"] and v1["n_rows"] == n
        labels = [Label(lb.field, "Edited caption" if lb.field == "title" else lb.text, lb.licence, lb.lang, lb.source)
                  for lb in (Label(**x) for x in json.loads(r[caption]["labels"]))]
        store.record_batch([
            record_of(r[caption], title="Edited caption", labels=labels),
            record_of(r[image], data=reencode(r[image]["image"])),
            record_of(r[licence], licence=LicenceDecision(True, "cc-by-sa", r[licence]["licence_reason"],
                                                          json.loads(r[licence]["licence_evidence"]))),
            record_of(r[rejected], status="rejected", reason="rejected: a trademark after all", data=None,
                      licence=LicenceDecision(False, "unknown", "rejected: a trademark after all", {"note": "logo"})),
        ])
        exclusions.add(excl, excluded, "takedown request #8", "2026-11-30", store=store)
        v2 = pin.pin(store, "v2", tmp_path / "s", exclusions.read(excl))
    d = pdiff.diff("v1", "v2", tmp_path / "s")
    assert d["counts"] == {"added": 0, "removed": 2, "changed": 3, "unchanged": n - 5}
    assert d["removed"] == sorted([rejected, excluded])
    assert d["changed_by_group"] == {"caption/labels": 1, "licence": 1, "image bytes": 1, "dimensions": 0,
                                     "source URL": 0, "evidence": 0, "other": 0}
    assert d["licence_transitions"] == [{"from": "pd", "to": "cc-by-sa", "count": 1, "regression": True}]
    proc = pdd(["diff", "v1", "v2", "--out-dir", str(tmp_path / "s")], tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"--- v1  (snapshot name, {n} rows, {v1['content_hash'][:12]})")
    assert lines[1].startswith(f"+++ v2  (snapshot name, {n - 2} rows, {v2['content_hash'][:12]})")
    detail = {caption: f"~ {caption}  rev 1 -> 2  caption/labels (title, labels)",
              image: f"~ {image}  rev 1 -> 2  image bytes (sha256, size)",
              licence: f"~ {licence}  rev 1 -> 2  licence (licence_kind) pd -> cc-by-sa"}
    assert lines[2:] == [
        *(f"- {fid}" for fid in sorted([rejected, excluded])),
        *(detail[fid] for fid in sorted(detail)),
        f"0 added, 2 removed, 3 changed, {n - 5} unchanged",
        "changed by field: caption/labels 1, licence 1, image bytes 1, dimensions 0, source URL 0, evidence 0, other 0",
        "licence transitions:",
        "  pd -> cc-by-sa: 1   <-- RIGHTS REGRESSION",
        "!!! RIGHTS REGRESSION: 1 row(s) moved to a licence outside ['cc0', 'pd'] (the audit will refuse this "
        "snapshot; check the licence decisions before building)",
    ]
    same = pdd(["diff", "v1", str(demo), "--out-dir", str(tmp_path / "s")], tmp_path)
    assert same.returncode == 0 and f"0 added, 0 removed, 0 changed, {n} unchanged" in same.stdout
