"""Issue 25, class 3: every statement of an Open Clip Art SVG's RDF licence block must agree with a
public-domain decision. A PublicDomain licence beside cc:requires / cc:prohibits, an unknown cc:permits,
another statement inside cc:License, or a licence element whose own text or attributes say something
else is rejected, through the importer and through the audit's re-decision from the stored evidence;
a clean PD file (cc:permits Reproduction/Distribution/DerivativeWorks, as the real 0.18 files have) is
still accepted, with the evidence it always had."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pdd.rights import openclipart as rights
from pdd.rights.audit import row_problems
from pdd.source.openclipart import import_openclipart
from pdd.source.store import Store

PD = "http://web.resource.org/cc/PublicDomain"
CC = "http://web.resource.org/cc/"
PERMITS = "".join(f'<cc:permits rdf:resource="{CC}{t}" />' for t in ("Reproduction", "Distribution", "DerivativeWorks"))


def svg(licence_el: str = f'<cc:license rdf:resource="{PD}" />', block: str = PERMITS, about: str = PD) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/" width="4" height="4">
 <metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>A duck</dc:title>
  <dc:creator><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:creator>{licence_el}
 </cc:Work><cc:License rdf:about="{about}">{block}</cc:License></rdf:RDF></metadata>
</svg>"""


CASES = {
    "clean": (svg(), None),
    "requires_attribution": (svg(block=PERMITS + f'<cc:requires rdf:resource="{CC}Attribution" />'), "restricts"),
    "requires_notice": (svg(block=PERMITS + f'<cc:requires rdf:resource="{CC}Notice" />'), "restricts"),
    "requires_sharealike_in_work": (svg(licence_el=f'<cc:license rdf:resource="{PD}" /><cc:requires rdf:resource="{CC}ShareAlike" />'), "restricts"),
    "prohibits_commercial": (svg(block=PERMITS + f'<cc:prohibits rdf:resource="{CC}CommercialUse" />'), "restricts"),
    "permits_unknown": (svg(block=PERMITS + f'<cc:permits rdf:resource="{CC}PersonalUseOnly" />'), "restricts"),
    "licence_block_note": (svg(block=PERMITS + "<dc:description>attribution required</dc:description>"), "restricts"),
    "licence_text_all_rights": (svg(licence_el=f'<cc:license rdf:resource="{PD}">All rights reserved</cc:license>'), "conflicting"),
    "licence_block_text": (svg(block="All rights reserved" + PERMITS), "conflicting"),
    "licence_extra_attribute": (svg(licence_el=f'<cc:license rdf:resource="{PD}" dc:rights="no commercial use" />'), "conflicting"),
    "rights_text": (svg(licence_el=f'<cc:license rdf:resource="{PD}" /><dc:rights>All rights reserved</dc:rights>'), "conflicting"),
}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 0, 0)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture()
def tree(tmp_path):
    base = tmp_path / "root" / "usr" / "share" / "openclipart"
    for key, (text, _) in CASES.items():
        for kind, data in (("svg", text.encode()), ("png", png())):
            (base / kind / "t").mkdir(parents=True, exist_ok=True)
            (base / kind / "t" / f"{key}.{kind}").write_bytes(data)
    return tmp_path / "root"


def test_importer_rejects_every_restriction_and_keeps_the_clean_file(tree, tmp_path):
    with Store(tmp_path / "db" / "pdd.duckdb") as store:
        import_openclipart(store, tree, max_side=4, workers=1)
        rows = {r["file_id"].split(":", 1)[1]: r for r in store.query("SELECT file_id, status, reason, licence_evidence FROM current_revisions")}
    for key, (_, expect) in CASES.items():
        row = rows[f"t/{key}"]
        if expect is None:
            assert row["status"] == "accepted", row
            assert "restrictions" not in json.loads(row["licence_evidence"])  # the evidence a clean file always had
        else:
            assert row["status"] == "rejected" and expect in row["reason"], (key, row["reason"])
    ev = json.loads(rows["t/requires_attribution"]["licence_evidence"])
    assert ev["restrictions"] == [[f"{CC}requires", f"{CC}Attribution"]]
    assert "Attribution" in rows["t/requires_attribution"]["reason"]


@pytest.mark.parametrize("key", [k for k, (_, e) in CASES.items() if e])
def test_the_audit_redecides_the_same_from_the_evidence(key):
    """An accepted row whose stored evidence holds the statement fails the audit (defence in depth)."""
    meta = rights.read_rdf(CASES[key][0].encode())
    decision = rights.decide(meta, f"t/{key}")
    assert not decision.accepted
    again = rights.redecide(json.loads(json.dumps(decision.evidence)))
    assert (again.accepted, again.kind, again.reason) == (decision.accepted, decision.kind, decision.reason)
    row = {"licence_status": "accepted", "licence_kind": "pd", "licence_reason": "accepted: public domain",
           "licence_evidence": json.dumps(decision.evidence)}
    assert any("does not support acceptance" in p for p in row_problems(row, ["pd", "cc0"])), key


def test_clean_evidence_passes_and_garbled_restrictions_fail_the_audit():
    decision = rights.decide(rights.read_rdf(CASES["clean"][0].encode()), "t/clean")
    assert decision.accepted and decision.kind == "pd"
    row = {"licence_status": "accepted", "licence_kind": "pd", "licence_reason": decision.reason,
           "licence_evidence": json.dumps(decision.evidence)}
    assert row_problems(row, ["pd", "cc0"]) == []
    for garbled in ("Attribution", [["x"]], [[1, 2]], {"a": "b"}):
        bad = dict(row, licence_evidence=json.dumps({**decision.evidence, "restrictions": garbled}))
        assert any("does not support acceptance" in p for p in row_problems(bad, ["pd", "cc0"])), garbled
