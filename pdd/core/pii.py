"""Personal data in text: e-mail addresses, phone numbers and URLs, found and removed.

Captions are built from labels people wrote (titles, descriptions, keywords), and some of them carry an
uploader's e-mail address, a phone number or a home page. `scrub(text)` removes them before the text
becomes training data or reaches the model card, and says what it removed (counted by the export). The
patterns are deliberately broad (fail closed): a run of 7 or more digits with phone punctuation is removed
even when it is not a phone number; dates like 2006-01-02, year ranges like 1959-1963 and sizes like
1024x768 are not phones.
"""
from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+%-]+\s*(?:@|\(at\)|\[at\]|\s+at\s+)\s*[\w-]+(?:\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*[\w-]+)*"
                   r"\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*[a-z]{2,24}\b", re.IGNORECASE)
URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|info|biz|"
                 r"de|fr|it|es|nl|uk|ru|br|pl|ch|at|be|se|no|fi|dk|cz|jp|cn|au|ca|us|io|eu)(?:/[^\s<>\"']*)?\b",
                 re.IGNORECASE)
PHONE = re.compile(r"(?<![\w.])(?:\+|00)?\d(?:[\s().\-/]{0,2}\d){6,14}(?![\w])")
_DATE_OR_SIZE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d+x\d+$|^\d{4}\s?[-/]\s?\d{4}$")  # a date, a size, a year range
KINDS = ("email", "phone", "url")


def scrub(text: str) -> tuple[str, dict[str, int]]:
    """TEXT without e-mail addresses, URLs and phone numbers (whitespace and stray separators tidied),
    and how many of each kind it removed ({} when nothing)."""
    counts: dict[str, int] = {}
    out = str(text or "")
    for kind, pattern in (("email", EMAIL), ("url", URL), ("phone", PHONE)):
        def repl(m, kind=kind):
            if kind == "phone" and (_DATE_OR_SIZE.match(m.group(0).strip()) or sum(c.isdigit() for c in m.group(0)) < 7):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return " "
        out = pattern.sub(repl, out)
    if counts:
        out = re.sub(r"\(\s*(?:[\w-]+\s*:)?\s*\)|\[\s*\]|<\s*>", " ", out)  # "(email: )" left behind
        out = " ".join(out.split())
        out = re.sub(r"\s+([,;:.])", r"\1", out)
        out = re.sub(r"([,;])(?:\s*[,;])+", r"\1", out).strip(" ,;:-")
    return out, counts
