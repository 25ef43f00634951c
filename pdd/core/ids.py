"""What a file id may contain, one rule for every source, and how to print any id safely.

A file id is '<source_id>:<external_id>'. It is a line of `data/exclusions.tsv`, a cell of a
snapshot and a word on the terminal, so an external id must have no surrounding
whitespace and consist of printable characters only (`str.isprintable`: no C0/C1 controls, no
newline, tab, CR, NUL or escape, no Unicode line/paragraph separators or format characters, no
lone surrogates from undecodable file names). Ids are checked where they enter (the importers)
and where they are written (`pdd exclude`); `printable` escapes what a crafted snapshot holds
anyway, and leaves every valid id as it is.
"""
from __future__ import annotations

from pdd.core.errors import PddError


def id_problem(text) -> str | None:
    """Why TEXT cannot be an id (or part of one), or None when it can."""
    if not isinstance(text, str):
        return f"not text ({type(text).__name__})"
    if text != text.strip():
        return "leading or trailing whitespace"
    bad = sorted({ch for ch in text if not ch.isprintable()})
    if bad:
        return "control or invisible character(s) " + ", ".join(repr(ch) for ch in bad[:5])
    return None


def check_id(text, what: str = "id", fix: str = "fix or rename it") -> str:
    """TEXT if it is a valid id, else PddError naming it (repr-escaped), the problem and FIX (what to do)."""
    problem = id_problem(text)
    if problem:
        raise PddError(f"{what} {text!r}: {problem} (ids must be printable text without surrounding whitespace, "
                       f"or a takedown could not name them); {fix}")
    return text


def printable(text) -> str:
    """TEXT with every non-printable character written as its Python escape (a valid id is unchanged)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
