"""Rights of a Commons file from its extmetadata and (when present) Structured Data. Fail closed.

Accepted only when the machine-readable ``License`` is ``pd`` or ``cc0`` AND every other licence
field that is present agrees with it (LicenseShortName, UsageTerms, LicenseUrl), attribution is
not required, a public-domain file is not marked Copyrighted, there are no Restrictions, and the
SDC statements (P275 licence, P6216 copyright status), when there are any, say the same. Anything
missing, garbled or conflicting is rejected with the reason; the category tree is only a hint and
is kept as evidence, never used to accept.
"""
from __future__ import annotations

import html
import re

from pdd.rights.text import LicenceDecision, classify_licence_text

LICENCE_FIELDS = ("License", "LicenseShortName", "UsageTerms", "LicenseUrl", "AttributionRequired", "Copyrighted", "Restrictions")
RASTER_MIMES = {"image/jpeg", "image/png", "image/tiff", "image/webp", "image/gif"}
# Wikidata items used in SDC
Q_PUBLIC_DOMAIN = "Q19652"
Q_CC0_STATUS = "Q88088423"  # copyrighted, dedicated to the public domain by the copyright holder
Q_COPYRIGHTED = "Q50423863"
Q_CC0 = "Q6938433"
FREE_STATUS = {Q_PUBLIC_DOMAIN: "pd", Q_CC0_STATUS: "cc0"}
FREE_LICENCE = {Q_CC0: "cc0"}

_TAG = re.compile(r"<[^>]*>")


def strip_html(value) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", str(value))).split())


def em_value(extmetadata: dict | None, key: str) -> str | None:
    """The text of one extmetadata field, or None when the key is absent or malformed."""
    entry = (extmetadata or {}).get(key)
    if not isinstance(entry, dict) or "value" not in entry:
        return None
    return strip_html(entry["value"])


def sdc_items(entity: dict | None, prop: str) -> list[str]:
    """Item ids of the non-deprecated statements of one property ('somevalue'/'novalue' as such)."""
    if not entity or "missing" in entity:
        return []
    out = []
    for st in (entity.get("statements") or entity.get("claims") or {}).get(prop, []):
        if st.get("rank") == "deprecated":
            continue
        snak = st.get("mainsnak", {})
        if snak.get("snaktype") != "value":
            out.append(snak.get("snaktype", "garbled"))
            continue
        value = snak.get("datavalue", {}).get("value")
        out.append(value.get("id", "garbled") if isinstance(value, dict) else "garbled")
    return out


def media_problem(info: dict) -> str | None:
    """Why a file is not a raster image we can use (PDF, DjVu, SVG, video, audio), or None."""
    mime, mediatype = info.get("mime"), info.get("mediatype")
    if mime not in RASTER_MIMES or mediatype != "BITMAP":
        return f"rejected: not a raster image ({mime}, {mediatype})"
    return None


def decide(extmetadata: dict | None, sdc: dict | None = None) -> LicenceDecision:
    em = {k: em_value(extmetadata, k) for k in LICENCE_FIELDS}
    present = {k: v for k, v in em.items() if v is not None}
    cats = em_value(extmetadata, "Categories") or ""
    evidence: dict = {"extmetadata": present,
                      "category_hints": [c for c in cats.split("|") if re.search(r"\bPD\b|PD-|CC-Zero|CC0|CC-PD", c)]}
    if sdc is not None:
        evidence["sdc"] = {"P275": sdc_items(sdc, "P275"), "P6216": sdc_items(sdc, "P6216"), "missing": "missing" in sdc}

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
    if present.get("Restrictions"):
        return reject("restricted", f"restrictions {present['Restrictions']!r}")
    sdc_note = ""
    if sdc is not None and "missing" not in sdc:
        p275, p6216 = sdc_items(sdc, "P275"), sdc_items(sdc, "P6216")
        for q in p275:
            if q not in FREE_LICENCE:
                return reject("conflict", f"conflicting licence signals: extmetadata says {licence} but SDC licence (P275) is {q}")
        for q in p6216:
            if q not in FREE_STATUS:
                return reject("conflict", f"conflicting licence signals: extmetadata says {licence} but SDC copyright status (P6216) is {q}")
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
    sdc = None
    if isinstance(evidence.get("sdc"), dict):
        if evidence["sdc"].get("missing"):
            sdc = {"missing": ""}
        else:
            def statement(item: str) -> dict:
                if item.startswith("Q"):
                    return {"mainsnak": {"snaktype": "value", "datavalue": {"value": {"id": item}}}}
                return {"mainsnak": {"snaktype": item}}
            sdc = {"statements": {p: [statement(q) for q in evidence["sdc"].get(p, [])] for p in ("P275", "P6216")}}
    return decide(extmetadata, sdc)
