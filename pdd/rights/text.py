"""Rights decisions. Fail closed: only a positive, unambiguous public-domain or
CC0 signal is accepted; anything missing, garbled or conflicting is rejected
with a stored reason and the evidence that decided it."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

ACCEPTED_KINDS = ("pd", "cc0")


@dataclass(frozen=True)
class LicenceDecision:
    accepted: bool
    kind: str  # 'pd' | 'cc0' when accepted; otherwise what was recognised, or 'unknown'
    reason: str  # one line, stored with the row
    evidence: dict = field(default_factory=dict)


# Words that tell *why* a statement is rejected (the kind stored with the rejection). They never
# accept anything: acceptance is only by the exact allow-list below.
_CC0 = re.compile(r"\bcc[\s-]?0\b|\bcc[\s-]?zero\b|creative commons zero|publicdomain/zero", re.I)
_PD = re.compile(r"\bpublic[\s_-]?domain\b|\bpd-(old|art|us|scan|mark|textlogo)|publicdomain/mark|\bpdm\b", re.I)
_RESTRICTIVE = [
    (re.compile(r"\bcc[\s-]?by\b|\bby[\s-](sa|nc|nd)\b|creativecommons\.org/licenses/by|creative commons attribution|\battribution\b", re.I), "cc-by"),
    (re.compile(r"\bshare[\s-]?alike\b|\bnon[\s-]?commercial\b|\bno[\s-]?deriv", re.I), "cc-restrictive"),
    (re.compile(r"\ball rights reserved\b|©|\(c\)\s*\d{4}|\bcopyright(ed)?\b|\bfair use\b", re.I), "copyrighted"),
    (re.compile(r"\bgfdl\b|\bgnu free documentation\b|\bgpl\b", re.I), "copyleft"),
    (re.compile(r"\b(not|non|no|never|isn'?t)\b[\s-]*(in\s+(the\s+)?)?(cc[\s-]?0|public[\s_-]?domain)"
                r"|\b(does|do|did)\s+not\s+apply\b|is_public_domain\s*=\s*(false|0|no)\b|:\s*(no|false)\b|=\s*(false|0|no)\b", re.I), "not-pd"),
    (re.compile(r"\?|\b(unknown|uncertain|unclear|possibly|probably|maybe|pending|disputed|unverified|undetermined|presumed|in the us|in the united states)\b", re.I), "uncertain"),
]

# ---- the allow-list: the only statements that are accepted --------------------------------------
# A statement is accepted only when, after normalising case, whitespace and separator punctuation
# (spaces, '-', '_', ',', ';', ':', '.'), it is exactly one of these forms, or exactly one of the
# CC0 / Public Domain Mark URLs below. Anything more (a hedge, a condition, a scope, a date, a
# question mark, a second licence) is not on the list and is rejected as unrecognised.
_FORMS = {
    "cc0": [
        "CC0", "CC0 1.0", "CC0 1.0 Universal", "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication",
        "CC0 Public Domain Dedication", "CC0 1.0 Public Domain Dedication", "CC-Zero", "CC Zero",
        "Creative Commons Zero", "Creative Commons Zero, Public Domain Dedication",  # Commons' UsageTerms for {{CC-zero}}
        "Creative Commons CC0 1.0 Universal", "Public Domain (CC0)", "Public Domain (CC0 1.0)",
        # a public-domain work photographed under CC0 (museum open access), and the Art Institute of
        # Chicago open-access statement (as in ../shared/datasets/aic-paintings-267)
        "Public domain artwork; image CC0 1.0",
        "Public domain artwork; image CC0 1.0 (Art Institute of Chicago open access, is_public_domain=true)",
    ],
    "pd": [
        "Public Domain", "Public-domain", "PD", "PD-old", "PD-old-100", "PD-old-70", "PD-US", "PD-art", "PD-Art (PD-old-100)",
        "PD-scan", "Public Domain Mark", "Public Domain Mark 1.0", "PDM", "PDM 1.0",
        "Creative Commons Public Domain Mark 1.0",
    ],
}
_SEPARATORS = re.compile(r"[\s\-_,;:.\u2010-\u2015\u2212]+")
_URL = re.compile(
    r"https?://(www\.)?creativecommons\.org/("
    r"publicdomain/(?P<tool>zero|mark)/1\.0(/((legalcode|deed)(\.[a-z]{2,3}([-_][a-z0-9]{2,4})?)?)?)?"
    r"|licenses/(?P<old>publicdomain))/?"
)


def normalise_statement(text: str) -> str:
    """Case, whitespace and separator punctuation folded away; everything else kept (so '?', '!',
    parentheses and words still count)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SEPARATORS.sub(" ", folded).strip()


ALLOWED_STATEMENTS: dict[str, str] = {normalise_statement(form): kind for kind, forms in _FORMS.items() for form in forms}


def recognised_kind(text: str | None) -> str | None:
    """'cc0' or 'pd' when TEXT is exactly a recognised public-domain/CC0 statement, else None."""
    if text is None:
        return None
    stripped = unicodedata.normalize("NFKC", str(text)).strip()
    m = _URL.fullmatch(stripped.casefold())
    if m:
        return "cc0" if m.group("tool") == "zero" else "pd"
    return ALLOWED_STATEMENTS.get(normalise_statement(stripped))


def classify_licence_text(text: str | None, *, field_name: str = "licence") -> LicenceDecision:
    """Decide a free-text licence statement (a CSV column, a museum's rights field): accepted only
    when it is exactly a recognised form (ALLOWED_STATEMENTS or a CC0/PDM URL)."""
    raw = "" if text is None else str(text)
    cleaned = " ".join(raw.split())
    evidence = {"field": field_name, field_name: raw}  # "field" lets the audit re-decide from evidence alone
    if not cleaned:
        return LicenceDecision(False, "unknown", f"rejected: empty {field_name}", evidence)
    kind = recognised_kind(raw)
    if kind == "cc0":
        # a CC0 dedication of the image is the stronger statement about the bytes we store
        return LicenceDecision(True, "cc0", f"accepted: CC0 in {field_name}", {**evidence, "matched": "cc0"})
    if kind == "pd":
        return LicenceDecision(True, "pd", f"accepted: public domain in {field_name}", {**evidence, "matched": "pd"})
    # rejected; the kind and reason say why when a known non-free signal is present
    vetoes = [name for rx, name in _RESTRICTIVE if rx.search(cleaned)]
    is_cc0, is_pd = bool(_CC0.search(cleaned)), bool(_PD.search(cleaned))
    if vetoes:
        if is_cc0 or is_pd:
            return LicenceDecision(
                False, vetoes[0], f"rejected: conflicting licence signals in {field_name} ({', '.join(vetoes)} beside public domain/CC0)", evidence
            )
        return LicenceDecision(False, vetoes[0], f"rejected: {field_name} {cleaned[:80]!r} is not public domain or CC0", evidence)
    return LicenceDecision(False, "unknown", f"rejected: unrecognised licence statement in {field_name}: {cleaned[:80]!r} "
                           "(only exact public-domain/CC0 forms are accepted, e.g. 'Public domain', 'CC0 1.0', a CC0 or PDM URL)", evidence)


def redecide_text(evidence: dict) -> LicenceDecision | None:
    """Decide again from the evidence a free-text decision stored (None if it is not such evidence)."""
    name = evidence.get("field")
    if name is None:  # evidence written before "field" was recorded: the usual column names
        known = [k for k in ("license", "licence", "rights") if k in evidence]
        name = known[0] if len(known) == 1 else None
    if not isinstance(name, str) or name not in evidence:
        return None
    return classify_licence_text(evidence[name], field_name=name)
