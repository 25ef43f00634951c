"""Rights decisions. Fail closed: only a positive, unambiguous public-domain or
CC0 signal is accepted; anything missing, garbled or conflicting is rejected
with a stored reason and the evidence that decided it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

ACCEPTED_KINDS = ("pd", "cc0")


@dataclass(frozen=True)
class LicenceDecision:
    accepted: bool
    kind: str  # 'pd' | 'cc0' when accepted; otherwise what was recognised, or 'unknown'
    reason: str  # one line, stored with the row
    evidence: dict = field(default_factory=dict)


_CC0 = re.compile(r"\bcc[\s-]?0\b|\bcc[\s-]?zero\b|creative commons zero|publicdomain/zero", re.I)
_PD = re.compile(r"\bpublic[\s_-]?domain\b|\bpd-(old|art|us|scan|mark|textlogo)|publicdomain/mark|\bpdm\b", re.I)
# Signals that something is *not* (or not certainly) free of rights. Any of them vetoes a positive
# signal: free text is only accepted when it states PD/CC0 without negation, hedging or restriction.
_RESTRICTIVE = [
    (re.compile(r"\bcc[\s-]?by\b|\bby[\s-](sa|nc|nd)\b|creativecommons\.org/licenses/by|creative commons attribution|\battribution\b", re.I), "cc-by"),
    (re.compile(r"\bshare[\s-]?alike\b|\bnon[\s-]?commercial\b|\bno[\s-]?deriv", re.I), "cc-restrictive"),
    (re.compile(r"\ball rights reserved\b|©|\(c\)\s*\d{4}|\bcopyright(ed)?\b|\bfair use\b", re.I), "copyrighted"),
    (re.compile(r"\bgfdl\b|\bgnu free documentation\b|\bgpl\b", re.I), "copyleft"),
    (re.compile(r"\b(not|non|no|never|isn'?t)\b[\s-]*(in\s+(the\s+)?)?(cc[\s-]?0|public[\s_-]?domain)"
                r"|\b(does|do|did)\s+not\s+apply\b|is_public_domain\s*=\s*(false|0|no)\b|:\s*(no|false)\b|=\s*(false|0|no)\b", re.I), "not-pd"),
    (re.compile(r"\?|\b(unknown|uncertain|unclear|possibly|probably|maybe|pending|disputed|unverified|undetermined|presumed|in the us|in the united states)\b", re.I), "uncertain"),
]


def classify_licence_text(text: str | None, *, field_name: str = "licence") -> LicenceDecision:
    """Decide a free-text licence statement (a CSV column, a museum's rights field)."""
    raw = "" if text is None else str(text)
    cleaned = " ".join(raw.split())
    evidence = {"field": field_name, field_name: raw}  # "field" lets the audit re-decide from evidence alone
    if not cleaned:
        return LicenceDecision(False, "unknown", f"rejected: empty {field_name}", evidence)
    vetoes = [name for rx, name in _RESTRICTIVE if rx.search(cleaned)]
    is_cc0, is_pd = bool(_CC0.search(cleaned)), bool(_PD.search(cleaned))
    if vetoes:
        if is_cc0 or is_pd:
            return LicenceDecision(
                False, vetoes[0], f"rejected: conflicting licence signals in {field_name} ({', '.join(vetoes)} beside public domain/CC0)", evidence
            )
        return LicenceDecision(False, vetoes[0], f"rejected: {field_name} {cleaned[:80]!r} is not public domain or CC0", evidence)
    if is_cc0:
        # a CC0 dedication of the image is the stronger statement about the bytes we store
        return LicenceDecision(True, "cc0", f"accepted: CC0 in {field_name}", {**evidence, "matched": "cc0"})
    if is_pd:
        return LicenceDecision(True, "pd", f"accepted: public domain in {field_name}", {**evidence, "matched": "pd"})
    return LicenceDecision(False, "unknown", f"rejected: {field_name} {cleaned[:80]!r} not recognised as public domain or CC0", evidence)


def redecide_text(evidence: dict) -> LicenceDecision | None:
    """Decide again from the evidence a free-text decision stored (None if it is not such evidence)."""
    name = evidence.get("field")
    if name is None:  # evidence written before "field" was recorded: the usual column names
        known = [k for k in ("license", "licence", "rights") if k in evidence]
        name = known[0] if len(known) == 1 else None
    if not isinstance(name, str) or name not in evidence:
        return None
    return classify_licence_text(evidence[name], field_name=name)
