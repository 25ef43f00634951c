"""The marks and likeness screen (pdd/rights/screen.py): what a public-domain licence does not clear.

Real imports into a real store, pins and audits: a `firefox` file in an icon theme and a brand name beside
"logo" are marks; a `people/` image whose text names a person, and a description saying "autotraced from a
photograph", are likenesses; data/rights_review.tsv overrides the screen in both directions; the audit
decides every snapshot row again and names a row today's screen rejects."""
from __future__ import annotations

import json

import pytest

from pdd import snapshot
from pdd.core.errors import PddError
from pdd.rights import audit, screen
from pdd.source import pin
from pdd.source.openclipart import import_openclipart
from pdd.source.store import Store
from test_openclipart import png_bytes, svg, write_tree

CASES = {
    "computer/icons/lemon-theme/apps/firefox": svg(title="firefox", keywords=("browser", "icon")),
    "computer/icons/firefox_round": svg(title="Firefox round", keywords=("icon",)),
    "shapes/apple_mark": svg(title="Apple brand sign", keywords=("apple",)),
    "food/fruit/apple": svg(title="Apple", keywords=("apple", "fruit")),
    "signs_and_symbols/flags/miscellany/unicef": svg(title="UNICEF", keywords=("flag",)),
    "people/portrait_of_a_musician": svg(title="Portrait", description="A picture of John Coltrane converted to vector graphics"),
    "people/man_walking": svg(title="Man walking", description="a man walking his dog", keywords=("people",)),
    "people/drawn_by_jane": svg(title="Jane Doe at work", creator="Jane Doe", keywords=("people",)),
    "buildings/library": svg(title="Library", description="Image autotraced from a photograph of a library"),
    "office/telefono_email": svg(title="telefono email", description="mail me at someone@example.org",
                                 keywords=("phone", "mail")),
    "animals/birds/duck": svg(),
}
EXPECTED = {
    "openclipart:computer/icons/lemon-theme/apps/firefox": "rejected: mark: 'icon theme application folder'",
    "openclipart:computer/icons/firefox_round": "rejected: mark: 'firefox (Firefox)' in name",
    "openclipart:shapes/apple_mark": "rejected: mark: 'apple (Apple)' in name",
    "openclipart:food/fruit/apple": "accepted",
    "openclipart:signs_and_symbols/flags/miscellany/unicef": "rejected: mark: 'unicef' in name",
    "openclipart:people/portrait_of_a_musician": "rejected: likeness: 'person named: john coltrane' in description",
    "openclipart:people/man_walking": "accepted",
    "openclipart:people/drawn_by_jane": "accepted",   # the creator's own name is not a subject
    "openclipart:buildings/library": "rejected: likeness: 'traced: autotraced from a photograph' in description",
    "openclipart:office/telefono_email": "accepted",  # personal data is removed from captions, not a rejection
    "openclipart:animals/birds/duck": "accepted",
}


def review_file(path, lines):
    path.write_text("file_id\tdecision\treason\tdate\n" + "".join("\t".join(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "unpacked", {k: (v, png_bytes()) for k, v in CASES.items()})


def imported(tmp_path, tree, review=None, name="db"):
    path = review or tmp_path / "no-review.tsv"
    store = Store(tmp_path / name / "pdd.duckdb", rights_review=path)
    report = import_openclipart(store, tree, max_side=4, workers=1)
    return store, report


def test_marks_and_likenesses_are_rejected_with_their_reason(tmp_path, tree):
    store, report = imported(tmp_path, tree)
    with store:
        rows = {r["file_id"]: r for r in store.query("SELECT * FROM current_revisions")}
        got = {fid: "accepted" if r["status"] == "accepted" else r["reason"][: len(EXPECTED[fid])] for fid, r in rows.items()}
        assert got == EXPECTED
        assert report.reasons == {"accepted": 5, "rejected: mark": 4, "rejected: likeness": 2}
        for fid, r in rows.items():  # recorded as evidence either way; a screened-out file keeps no bytes
            ev = json.loads(r["licence_evidence"])
            assert ev["screen"]["decider"] == screen.DECIDER
            assert bool(ev["screen"].get("hits")) == (r["status"] == "rejected") and (r["sha256"] is None) == (r["status"] == "rejected")


def test_the_review_file_overrides_the_screen_in_both_directions(tmp_path, tree):
    review = review_file(tmp_path / "review.tsv", [
        ("openclipart:computer/icons/firefox_round", "accept", "a generic globe, not the Firefox logo", "2026-01-02"),
        ("openclipart:animals/birds/duck", "reject", "traced from a photograph (the creator says so by mail)", "2026-01-03"),
    ])
    store, report = imported(tmp_path, tree, review)
    with store:
        rows = {r["file_id"]: r for r in store.query("SELECT * FROM current_revisions")}
        fox, duck = rows["openclipart:computer/icons/firefox_round"], rows["openclipart:animals/birds/duck"]
        assert fox["status"] == "accepted" and fox["reason"].startswith("accepted")
        assert json.loads(fox["licence_evidence"])["screen"]["review"]["decision"] == "accept"
        assert duck["status"] == "rejected"
        assert duck["reason"] == "rejected: reviewed: traced from a photograph (the creator says so by mail) (2026-01-03)"
        assert report.reasons["rejected: reviewed"] == 1
        info = pin.pin(store, "screened", tmp_path / "snaps")
    path = tmp_path / "snaps" / "screened.parquet"
    ids = [r["file_id"] for r in snapshot.read_rows(path)]
    assert "openclipart:computer/icons/firefox_round" in ids and "openclipart:animals/birds/duck" not in ids
    assert json.loads((tmp_path / "snaps" / "screened.json").read_text())["rejected"] == {"likeness": 2, "mark": 3, "reviewed": 1}
    assert info["n_rows"] == len(ids)
    # the audit re-decides with the review file: with it the snapshot passes, without it the accepted mark fails
    assert audit.audit_snapshot(path, ["pd", "cc0"], tmp_path / "none.tsv", review)["passed"]
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ["pd", "cc0"], tmp_path / "none.tsv", tmp_path / "no-review.tsv")
    assert "openclipart:computer/icons/firefox_round (the marks and likeness screen rejects it (rejected: mark: " \
           "'firefox (Firefox)' in name" in str(err.value)


def test_the_audit_names_a_row_that_todays_screen_or_review_rejects(tmp_path, tree):
    store, _ = imported(tmp_path, tree)
    with store:
        pin.pin(store, "before", tmp_path / "snaps")
    path = tmp_path / "snaps" / "before.parquet"
    assert audit.audit_snapshot(path, ["pd", "cc0"], tmp_path / "none.tsv", tmp_path / "no-review.tsv")["passed"]
    # a human rejects a file after the pin: the old snapshot must not build
    review = review_file(tmp_path / "review.tsv", [("openclipart:food/fruit/apple", "reject", "fruit label is a brand", "2026-02-01")])
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ["pd", "cc0"], tmp_path / "none.tsv", review)
    assert "openclipart:food/fruit/apple (the marks and likeness screen rejects it (rejected: reviewed: fruit label" in str(err.value)
    # a row pinned by a screen that missed a mark (its evidence edited, as an older rule would have stored it)
    rows = snapshot.read_rows(path)
    duck = next(r for r in rows if r["file_id"] == "openclipart:animals/birds/duck")
    ev = json.loads(duck["licence_evidence"])
    ev["description"] = "the Firefox mascot as a duck"
    problems = audit.row_problems(dict(duck, licence_evidence=json.dumps(ev)), ["pd", "cc0"], {})
    assert problems == ["the marks and likeness screen rejects it (rejected: mark: 'firefox (Firefox)' in description "
                        "'the Firefox mascot as a duck')"]


@pytest.mark.parametrize("line,message", [
    ("openclipart:x accept reason 2026-01-01", ":2: expected 4 tab-separated cells (file_id, decision, reason, date), got 1; "
                                              "the cells must be separated by tabs"),
    ("openclipart:x\tmaybe\treason\t2026-01-01", ":2: decision 'maybe': must be accept or reject; fix that line"),
    ("openclipart:x\taccept\t\t2026-01-01", ":2: reason '': must be non-empty printable text; fix that line"),
    ("openclipart:x\taccept\tok\t2026-02-30", ":2: date '2026-02-30': not a calendar date; fix that line"),
    ("openclipart:x\taccept\tok\t2026-01-01\nopenclipart:x\treject\tno\t2026-01-02", ":3: openclipart:x is reviewed twice"),
])
def test_the_review_file_is_read_strictly(tmp_path, line, message):
    path = tmp_path / "rights_review.tsv"
    path.write_text("file_id\tdecision\treason\tdate\n" + line + "\n", encoding="utf-8")
    with pytest.raises(PddError) as err:
        screen.read_review(path)
    assert str(err.value).startswith(f"{path}{message}")
    assert "\n" not in str(err.value)


def test_the_committed_review_file_and_lists_parse():
    from conftest import REPO
    review = screen.read_review(REPO / "data/rights_review.tsv")
    assert review and all(v["decision"] in ("accept", "reject") for v in review.values())
    marks = screen.brands()
    assert marks["firefox"] == ("Firefox", "word") and marks["apple"] == ("Apple", "context")
    assert "john" in screen.given_names() and "man" not in screen.given_names()
