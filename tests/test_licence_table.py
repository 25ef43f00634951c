"""Free-text licence statements are decided by an exact allow-list (pdd/rights/text.py): the table in
tests/licence_statements.tsv lists accepted forms and rejected hedges, conditions and look-alikes."""
from pathlib import Path

import pytest

from pdd.rights.text import classify_licence_text, redecide_text

TABLE = Path(__file__).with_name("licence_statements.tsv")


def load_table():
    rows = []
    for n, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        statement, expected, *why = line.split("\t")
        assert expected in ("cc0", "pd", "reject"), f"{TABLE.name}:{n}: bad expectation {expected!r}"
        rows.append(pytest.param(statement, expected, id=f"{n}:{statement.strip()[:40]}"))
    return rows


ROWS = load_table()


def test_table_is_big_enough():
    accepted = [p for p in ROWS if p.values[1] != "reject"]
    rejected = [p for p in ROWS if p.values[1] == "reject"]
    assert len(ROWS) >= 60 and len(accepted) >= 20 and len(rejected) >= 30


@pytest.mark.parametrize("statement,expected", ROWS)
def test_licence_statement(statement, expected):
    d = classify_licence_text(statement, field_name="license")
    if expected == "reject":
        assert not d.accepted, d
        assert d.reason.startswith("rejected: ") and "\n" not in d.reason
    else:
        assert d.accepted and d.kind == expected, d
    # the audit decides again from the stored evidence, with the same answer
    again = redecide_text(d.evidence)
    assert (again.accepted, again.kind) == (d.accepted, d.kind)


@pytest.mark.parametrize("statement", ["CC0 (but see restrictions)", "Public domain, no commercial use",
                                       "Public domain; commercial use prohibited", "CC0 1.0 - only for non-profit"])
def test_issue_hedges_are_unrecognised(statement):
    d = classify_licence_text(statement, field_name="license")
    assert not d.accepted and "unrecognised licence statement" in d.reason
