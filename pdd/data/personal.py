"""Personal data out of training text: e-mail addresses, phone numbers and URLs are removed from every
label before a caption is built from it (pdd.core.pii), the row stays; `removals` counts what was removed
for the export's metrics. Kept apart from the caption template so the rule is one call in export.py."""
from __future__ import annotations

import json
import re

from pdd.core import pii


def scrub_labels(labels: list[dict]) -> list[dict]:
    """LABELS with personal data removed from each text (a label left empty is dropped)."""
    out = []
    for lb in labels:
        text, _ = pii.scrub(lb.get("text") or "")
        if text.strip():
            out.append({**lb, "text": text})
    return out


def removals(rows, allowed_licences: list[str], template: str) -> dict:
    """{"rows": rows whose caption text lost something, "email"/"phone"/"url": how many were removed},
    counted over the labels a caption may use: a field of TEMPLATE, under an allowed licence of its own."""
    fields = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template))
    counts = {"rows": 0, **{k: 0 for k in pii.KINDS}}
    for row in rows:
        found = {}
        for lb in json.loads(row["labels"]):
            if lb.get("licence") in allowed_licences and lb.get("field") in fields:
                for kind, n in pii.scrub(lb.get("text") or "")[1].items():
                    found[kind] = found.get(kind, 0) + n
        counts["rows"] += bool(found)
        for kind, n in found.items():
            counts[kind] += n
    return counts
