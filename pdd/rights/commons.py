"""Rights of a Commons file from its extmetadata and (when present) Structured Data. Fail closed.

Accepted only when the machine-readable ``License`` is ``pd`` or ``cc0`` AND every other licence
field that is present agrees with it (LicenseShortName, UsageTerms, LicenseUrl), attribution is
not required, a public-domain file is not marked Copyrighted, there are no Restrictions, and the
SDC statements (P275 licence, P6216 copyright status), when there are any, say the same. Anything
missing, garbled or conflicting is rejected with the reason; the category tree is only a hint and
is kept as evidence, never used to accept.

extmetadata reports only the highest-priority licence of a page (an `Art Photo` page: a PD artwork, a
CC BY-SA photograph of it, reports `License: pd`), so every other signal must agree too: no licence or
restriction category of another kind (CC BY*, GFDL, FAL, attribution, fair use, non-free, personality
rights, trademark, insignia), no `NonFree` flag, a `Restrictions` field that is present and empty (a
missing one is not "no restrictions"), and no SDC statement scoped to a part of the file (P518) or
to one jurisdiction (P1001): a PD status qualified by jurisdictions is accepted only when it covers the
United States and a "countries with N years pma or shorter" group (see PMA_GROUPS).
"""
from __future__ import annotations

import html
import re

from pdd.rights.text import LicenceDecision, classify_licence_text

LICENCE_FIELDS = ("License", "LicenseShortName", "UsageTerms", "LicenseUrl", "AttributionRequired", "Copyrighted", "Restrictions",
                  "NonFree")
RASTER_MIMES = {"image/jpeg", "image/png", "image/tiff", "image/webp", "image/gif"}
# Wikidata items used in SDC
Q_PUBLIC_DOMAIN = "Q19652"
Q_CC0_STATUS = "Q88088423"  # copyrighted, dedicated to the public domain by the copyright holder
Q_COPYRIGHTED = "Q50423863"
Q_CC0 = "Q6938433"
FREE_STATUS = {Q_PUBLIC_DOMAIN: "pd", Q_CC0_STATUS: "cc0"}
FREE_LICENCE = {Q_CC0: "cc0"}
Q_USA = "Q30"
# jurisdiction groups that, together with the United States, make a PD status as wide as Commons' own
# rule (PD in the US and the source country); only ids verified against recorded SDC are listed
PMA_GROUPS = {"Q60332278"}  # countries with 100 years pma or shorter
SCOPE_QUALIFIERS = ("P1001", "P518")  # applies to jurisdiction, applies to part
# categories of a licence or restriction other than PD/CC0 (matched case-insensitively on the whole name)
CONFLICT_CATEGORY = re.compile(
    r"(cc[- ]by\b|creative commons attribution|gfdl|user-created gfdl|l?gpl\b|fal\b|free art licen[cs]e|"
    r"copyrighted free use|attribution\b|fair use|non-?free|license migration|personality rights|with trademark|"
    r"trademarked|insignia).*", re.I)

_TAG = re.compile(r"<[^>]*>")


def strip_html(value) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", str(value))).split())


def em_value(extmetadata: dict | None, key: str) -> str | None:
    """The text of one extmetadata field, or None when the key is absent or malformed."""
    if not isinstance(extmetadata, dict):
        return None
    entry = extmetadata.get(key)
    if not isinstance(entry, dict) or "value" not in entry:
        return None
    return strip_html(entry["value"])


def sdc_items(entity: dict | None, prop: str) -> list[str]:
    """Item ids of the non-deprecated statements of one property ('somevalue'/'novalue' as such)."""
    if not entity or "missing" in entity:
        return []
    out = []
    statements = entity.get("statements") or entity.get("claims") or {}
    if not isinstance(statements, dict) or not isinstance(statements.get(prop, []), list):
        return ["garbled"]  # never read as "no statements": a garbled entity rejects
    for st in statements.get(prop, []):
        if not isinstance(st, dict) or not isinstance(st.get("mainsnak", {}), dict):
            out.append("garbled")
            continue
        if st.get("rank") == "deprecated":
            continue
        snak = st.get("mainsnak", {})
        if snak.get("snaktype") != "value":
            out.append(snak.get("snaktype", "garbled"))
            continue
        value = snak.get("datavalue", {}).get("value")
        out.append(value.get("id", "garbled") if isinstance(value, dict) else "garbled")
    return out


def sdc_scopes(entity: dict | None, prop: str) -> list[list]:
    """[prop, n, qualifier, value] for every P1001/P518 qualifier of the n-th non-deprecated statement of
    PROP (n counts as sdc_items does)."""
    if not entity or "missing" in entity:
        return []
    out: list[list] = []
    n = -1
    statements = entity.get("statements") or entity.get("claims") or {}
    if not isinstance(statements, dict) or not isinstance(statements.get(prop, []), list):
        return []  # sdc_items reports it as garbled
    for st in statements.get(prop, []):
        if not isinstance(st, dict) or not isinstance(st.get("mainsnak", {}), dict):
            n += 1  # counted as sdc_items counts it ("garbled")
            continue
        if st.get("rank") == "deprecated":
            continue
        n += 1
        quals = st.get("qualifiers") or {}
        if not isinstance(quals, dict):
            out.append([prop, n, "garbled", "garbled"])
            continue
        for q in SCOPE_QUALIFIERS:
            for snak in quals.get(q) or []:
                snak = snak if isinstance(snak, dict) else {}
                if snak.get("snaktype") != "value":
                    out.append([prop, n, q, str(snak.get("snaktype", "garbled"))])
                    continue
                value = (snak.get("datavalue") or {}).get("value")
                out.append([prop, n, q, value.get("id", "garbled") if isinstance(value, dict) else "garbled"])
    return out


def scope_problem(p275: list[str], p6216: list[str], scopes: list[list]) -> str | None:
    """Why SDC statements scoped by qualifiers disagree with an unrestricted PD/CC0, or None."""
    for prop, _n, q, value in scopes:
        if q == "P518" or q == "garbled":
            return f"SDC {prop} statement applies only to a part of the file ({q} {value})"
        if prop == "P275":
            return f"SDC licence (P275) applies only to jurisdiction {value}"
    if not p6216:
        return None
    scoped = {}
    for _prop, n, q, value in scopes:
        if q == "P1001":
            scoped.setdefault(n, set()).add(value)
    if len(scoped) < len(p6216):
        return None  # a status without a jurisdiction qualifier: it applies everywhere
    jurisdictions = set().union(*scoped.values())
    if Q_USA in jurisdictions and jurisdictions & PMA_GROUPS:
        return None
    return f"SDC copyright status (P6216) applies only to {', '.join(sorted(jurisdictions))}"


def media_problem(info: dict) -> str | None:
    """Why a file is not a raster image we can use (PDF, DjVu, SVG, video, audio), or None."""
    mime, mediatype = info.get("mime"), info.get("mediatype")
    if not isinstance(mime, str) or mime not in RASTER_MIMES or mediatype != "BITMAP":
        return f"rejected: not a raster image ({mime}, {mediatype})"
    return None


def decide(extmetadata: dict | None, sdc: dict | None = None) -> LicenceDecision:
    em = {k: em_value(extmetadata, k) for k in LICENCE_FIELDS}
    present = {k: v for k, v in em.items() if v is not None}
    cats = em_value(extmetadata, "Categories") or ""
    evidence: dict = {"extmetadata": present,
                      "category_hints": [c for c in cats.split("|") if re.search(r"\bPD\b|PD-|CC-Zero|CC0|CC-PD", c)]}
    conflicts = [c for c in cats.split("|") if CONFLICT_CATEGORY.fullmatch(c.strip())]
    if conflicts:  # stored only when there are any: evidence of files without them is unchanged
        evidence["category_conflicts"] = conflicts
    scopes: list[list] = []
    if sdc is not None:
        evidence["sdc"] = {"P275": sdc_items(sdc, "P275"), "P6216": sdc_items(sdc, "P6216"), "missing": "missing" in sdc}
        scopes = sdc_scopes(sdc, "P275") + sdc_scopes(sdc, "P6216")
        if scopes:
            evidence["sdc"]["scopes"] = scopes

    def reject(kind: str, reason: str) -> LicenceDecision:
        return LicenceDecision(False, kind, f"rejected: {reason}", evidence)

    licence = (present.get("License") or "").lower()
    if not licence and not present.get("LicenseShortName"):
        return reject("unknown", "no licence fields in extmetadata (License and LicenseShortName missing)")
    if not licence:
        return reject("unknown", f"no machine-readable License field (LicenseShortName {present['LicenseShortName']!r})")
    if licence not in ("pd", "cc0"):
        return reject(licence, f"licence {licence} is not public domain or CC0")
    for key in ("LicenseShortName", "UsageTerms", "LicenseUrl"):
        if key == "LicenseShortName" and key not in present:
            return reject("unknown", f"License {licence} without LicenseShortName")
        if key in present:
            d = classify_licence_text(present[key], field_name=key)
            if not d.accepted or d.kind != licence:
                return reject(d.kind if not d.accepted else "conflict",
                              f"conflicting licence signals: License {licence} but {key} {present[key]!r}")
    attribution = (present.get("AttributionRequired") or "").lower()
    if attribution != "false":
        return reject("conflict", f"AttributionRequired is {present.get('AttributionRequired')!r}, not 'false'")
    copyrighted = (present.get("Copyrighted") or "").lower()
    if licence == "pd" and copyrighted != "false":
        return reject("conflict", f"public domain but Copyrighted is {present.get('Copyrighted')!r}")
    if "Restrictions" not in present:
        return reject("restricted", "no Restrictions field (a missing field is not 'no restrictions')")
    if present.get("Restrictions"):
        return reject("restricted", f"restrictions {present['Restrictions']!r}")
    if "NonFree" in present and present["NonFree"].lower() != "false":
        return reject("non-free", f"NonFree is {present['NonFree']!r}")
    if conflicts:
        return reject("conflict", f"conflicting licence signals: License {licence} but categor{'ies' if len(conflicts) > 1 else 'y'} "
                                  f"{' | '.join(conflicts[:3])}")
    sdc_note = ""
    if sdc is not None and "missing" not in sdc:
        p275, p6216 = sdc_items(sdc, "P275"), sdc_items(sdc, "P6216")
        for q in p275:
            if q not in FREE_LICENCE:
                return reject("conflict", f"conflicting licence signals: extmetadata says {licence} but SDC licence (P275) is {q}")
        for q in p6216:
            if q not in FREE_STATUS:
                return reject("conflict", f"conflicting licence signals: extmetadata says {licence} but SDC copyright status (P6216) is {q}")
        problem = scope_problem(p275, p6216, scopes)
        if problem:
            return reject("conflict", f"conflicting licence signals: extmetadata says {licence} but {problem}")
        if p275 or p6216:
            sdc_note = "; SDC agrees"
    name = "public domain" if licence == "pd" else "CC0"
    return LicenceDecision(True, licence, f"accepted: {name} (extmetadata License {licence}{sdc_note})", evidence)


def redecide(evidence: dict) -> LicenceDecision | None:
    """Decide again from the evidence decide() stored (None if it is not Commons evidence): the
    extmetadata fields as text, and the SDC statements as item ids, rebuilt into the API's shape."""
    if not isinstance(evidence.get("extmetadata"), dict):
        return None
    extmetadata = {k: {"value": v} for k, v in evidence["extmetadata"].items()}
    cats = [*(evidence.get("category_hints") or []), *(evidence.get("category_conflicts") or [])]
    if cats:
        extmetadata["Categories"] = {"value": "|".join(str(c) for c in cats)}
    sdc = None
    if isinstance(evidence.get("sdc"), dict):
        if evidence["sdc"].get("missing"):
            sdc = {"missing": ""}
        else:
            scopes = evidence["sdc"].get("scopes") or []

            def statement(prop: str, n: int, item: str) -> dict:
                st = {"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": item}}}} if item.startswith("Q") \
                    else {"mainsnak": {"snaktype": item}}
                quals: dict = {}
                for p, i, q, value in scopes:
                    if p == prop and i == n:
                        snak = {"snaktype": "value", "datavalue": {"value": {"id": value}}} if str(value).startswith("Q") \
                            else {"snaktype": value}
                        quals.setdefault(q, []).append(snak)
                if quals:
                    st["qualifiers"] = quals
                return st
            sdc = {"statements": {p: [statement(p, n, q) for n, q in enumerate(evidence["sdc"].get(p, []))]
                                  for p in ("P275", "P6216")}}
    return decide(extmetadata, sdc)
