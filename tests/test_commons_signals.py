"""The Commons decider reads every licence signal the API gives, not just the one licence extmetadata
reports (issue 9, rights 7), and is measured against real extmetadata with a truth label per file."""
import json
from pathlib import Path

import pytest

from pdd.rights.commons import decide, redecide
from conftest import SHARED


def em(**fields):
    return {k: {"value": v, "source": "commons-desc-page"} for k, v in fields.items()}


PD = dict(License="pd", LicenseShortName="Public domain", UsageTerms="Public domain", AttributionRequired="false",
          Copyrighted="False", Restrictions="", Categories="PD-Art (PD-old-100)|Paintings by someone")
CC0 = dict(License="cc0", LicenseShortName="CC0", UsageTerms="Creative Commons Zero, Public Domain Dedication",
           LicenseUrl="http://creativecommons.org/publicdomain/zero/1.0/deed.en", AttributionRequired="false",
           Copyrighted="True", Restrictions="", Categories="CC-Zero|Self-published work")


def item(q, **quals):
    st = {"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": q}}}, "rank": "normal"}
    if quals:
        st["qualifiers"] = {p: [{"snaktype": "value", "property": p, "datavalue": {"value": {"id": v}}} for v in vs]
                            for p, vs in quals.items()}
    return st


def sdc(**props):
    return {"id": "M1", "statements": props}


def decided(fields, sdc_entity=None):
    d = decide(em(**fields), sdc_entity)
    again = redecide(d.evidence)   # the audit's defence in depth reaches the same answer from the evidence
    assert (again.accepted, again.kind, again.reason) == (d.accepted, d.kind, d.reason)
    return d


def test_clean_pd_and_cc0_are_accepted():
    assert decided(PD).accepted and decided(CC0).accepted


@pytest.mark.parametrize("change,why", [
    # Art Photo: PD artwork, CC BY-SA photograph; extmetadata reports only the pd
    ({"Categories": "PD-Art (PD-old-100)|CC-BY-SA-4.0|Art Photo"}, "CC-BY-SA-4.0"),
    ({"Categories": "PD-old-100|GFDL|License migration redundant"}, "GFDL"),
    ({"Categories": "PD-old-100|Attribution only license"}, "Attribution only license"),
    ({"Categories": "PD-self|Personality rights warning"}, "Personality rights warning"),
    ({"Categories": "PD textlogo|With trademark"}, "With trademark"),
    ({"NonFree": "true"}, "NonFree"),
    ({"NonFree": ""}, "NonFree"),
    ({"Restrictions": None}, "no Restrictions field"),
    ({"Restrictions": "insignia"}, "insignia"),
])
def test_other_signals_that_disagree_reject(change, why):
    fields = {k: v for k, v in {**PD, **change}.items() if v is not None}
    d = decided(fields)
    assert not d.accepted and why in d.reason, d.reason


def test_cc0_with_personality_rights_rejects():
    d = decided({**CC0, "Restrictions": "personality"})
    assert not d.accepted and "personality" in d.reason


def test_cc_zero_category_beside_pd_is_no_conflict():
    assert decided({**PD, "Categories": "CC-PD-Mark|CC-Zero|PD-old-70-expired"}).accepted


@pytest.mark.parametrize("statements,ok,why", [
    ({"P6216": [item("Q19652")]}, True, ""),
    # PD in the US and in the countries with 100 years pma or shorter: Commons' own rule
    ({"P6216": [item("Q19652", P1001=["Q30"], P459=["Q47246828"]), item("Q19652", P1001=["Q60332278"])]}, True, ""),
    ({"P6216": [item("Q19652", P1001=["Q30"])]}, False, "applies only to Q30"),
    ({"P6216": [item("Q19652", P1001=["Q183"])]}, False, "applies only to Q183"),
    ({"P6216": [item("Q19652", P518=["Q4502142"])]}, False, "part of the file"),
    ({"P275": [item("Q6938433", P1001=["Q30"])]}, False, "applies only to jurisdiction Q30"),
    ({"P6216": [item("Q19652", P1001=["Q30"]), item("Q50423863", P1001=["Q183"])]}, False, "Q50423863"),
])
def test_sdc_qualifiers_that_scope_the_status_reject(statements, ok, why):
    d = decided(PD, sdc(**statements))
    assert d.accepted is ok and why in d.reason, d.reason


REAL = SHARED / "fixtures" / "commons-real-extmetadata"
# Files the truth labels accept (or lean to accept) that the decider rejects, each with why. Empty today:
# every file labelled `accept` is accepted. Add an entry here (never loosen the decider) when one appears.
FALSE_REJECTS: dict[str, str] = {}


@pytest.mark.skipif(not (REAL / "records").is_dir(), reason=f"{REAL} not present (reference data from ../shared)")
def test_real_extmetadata_no_false_accepts():
    records = sorted((REAL / "records").glob("*.json"))
    assert len(records) >= 170
    false_accepts, false_rejects = [], {}
    for path in records:
        rec = json.loads(path.read_text(encoding="utf-8"))
        d = decided_real(rec["extmetadata"])
        must_reject = rec["truth"] == "reject" or (rec["truth"] == "debatable" and rec.get("truth_lean") != "accept")
        if d.accepted and must_reject:
            false_accepts.append(f"{path.name}: {d.reason}")
        if not d.accepted and rec["truth"] == "accept":
            false_rejects[path.name] = d.reason
    assert false_accepts == []
    assert sorted(false_rejects) == sorted(FALSE_REJECTS), false_rejects


def decided_real(extmetadata):
    d = decide(extmetadata)
    again = redecide(d.evidence)
    assert (again.accepted, again.kind) == (d.accepted, d.kind)
    return d
