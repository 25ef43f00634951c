"""The marks and likeness screen: what a public-domain licence does not clear. Fail closed, every source.

A licence says who owns the copyright; it does not say that the picture is free of somebody's trademark,
that the person in it agreed, or that it was drawn rather than traced from a photograph. After a file's
licence is accepted, its text (file name and folders, title, keywords, description, every label but the
creator) is screened:

* **mark**: a brand or organisation name of data/rights/brands.tsv (npm `simple-icons`, CC0; see
  tools/screen_lists.py) as whole words; a name that is also an ordinary word or a given name ("apple",
  "shell", "otto") only beside a mark word (logo, brand, software, ...); a protected emblem or
  organisation (PROTECTED) in the file's name, folders or title; or an application folder of an icon
  theme (`icons/.../apps/`). E-mail addresses and URLs are removed first (pdd.core.pii: a creator's
  gmail address is personal data, not a mark).
* **likeness**: a `people/` image, or one whose text says portrait/caricature/bust, whose text names a
  person: a given name (data/rights/given-names.txt, US Census 1990) followed by another word, the
  creator's own name left out; or any image whose text says it was traced, converted or vectorised
  from a photograph or picture, or taken from Wikipedia.

A hit rejects the file unless data/rights_review.tsv accepts that id; the review file can also reject
a file the screen passes. Both directions are recorded in the row's licence evidence (`screen`) and the
audit decides every snapshot row again with today's lists and review file. Text matching cannot see
what the text does not say: an unnamed logo, a face with a generic title, a tracing nobody mentioned.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pdd import exclusions  # the same date rule as the takedown list
from pdd.core import files, pii
from pdd.core.errors import PddError
from pdd.core.hashing import canonical_json
from pdd.core.ids import check_id, id_problem

DECIDER = "pdd-screen/1"
REPO_ROOT = Path(__file__).resolve().parents[2]
BRANDS_PATH = REPO_ROOT / "data" / "rights" / "brands.tsv"
NAMES_PATH = REPO_ROOT / "data" / "rights" / "given-names.txt"
DEFAULT_REVIEW = Path("data/rights_review.tsv")
REVIEW_HEADER = ("file_id", "decision", "reason", "date")
DECISIONS = ("accept", "reject")

# words that make an ordinary-word brand name a mark ("apple" alone is fruit; "apple logo" is not)
MARK_WORDS = {"logo", "logos", "logotype", "brand", "brands", "branding", "trademark", "trademarks", "emblem",
              "mascot", "company", "corporation", "corp", "inc", "ltd", "gmbh", "software", "browser", "distro", "tm"}
# protected emblems and organisations (Geneva Conventions, Nairobi Treaty, UN bodies) and trade dress the
# brand list does not name; matched as whole words
PROTECTED = {"red cross", "red crescent", "red crystal", "olympic", "olympics", "olympic rings", "unicef", "unesco",
             "united nations", "nato", "ampelmannchen", "ampelmaennchen", "fifa", "uefa", "interpol", "wikipedia logo"}
ICON_APP_DIRS = {"apps", "applications"}
PEOPLE_DIRS = {"people"}
PEOPLE_EXEMPT = {"bodypart", "clothing"}  # body parts and clothes show nobody's likeness
PORTRAIT = re.compile(r"(?<![a-z])(portraits?|caricatures?|busts?|likeness|celebrit(?:y|ies)|self portrait)(?![a-z])")
TRACED = re.compile(
    r"(?<![a-z])(auto ?trac\w*|trac(?:ed|ing)|convert\w*|vectori[sz]\w*|based on|taken from|copied from|from)"
    r"(?![a-z])[^.;]{0,60}?(?<![a-z])(photo\w*|picture|pic|snapshot|jpe?g|wikipedia|wikimedia)(?![a-z])")
TRACED_AFTER = re.compile(
    r"(?<![a-z])(photo\w*|picture|pic|snapshot|jpe?g)(?![a-z])[^.;]{0,60}?(?<![a-z])(auto ?trac\w*|trac(?:ed|ing)|"
    r"convert(?:ed|ing)?|vectori[sz](?:ed|ing))(?![a-z])")
TRACED_ANYWHERE = re.compile(r"(?<![a-z])(auto ?traced|from wikipedia|from wikimedia)(?![a-z])")
# a tool named in prose ("created with Inkscape") is not a mark in the picture
TOOL_MENTION = {"with", "using", "in", "by"}
MAX_WORDS = 6
STRONG_FIELDS = {"dir", "name", "title", "keyword", "label:title", "label:keywords"}


def norm(text: str) -> str:
    """Accents dropped, lower case, every run of non-alphanumerics one space (as tools/screen_lists.py)."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def _list_lines(path: Path, what: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PddError(f"{path}: cannot read the {what} ({getattr(exc, 'strerror', None) or exc}); "
                       "regenerate it with `python3 tools/screen_lists.py`") from None
    return [ln for ln in text.split("\n") if ln.strip() and not ln.startswith("#")]


@lru_cache(maxsize=4)
def brands(path: str | Path = BRANDS_PATH) -> dict[str, tuple[str, str]]:
    """{normalised name: (title, 'word' | 'context')}."""
    out = {}
    for no, line in enumerate(_list_lines(Path(path), "brand list")):
        cells = line.split("\t")
        if no == 0 and cells[0] == "name":
            continue
        if len(cells) != 4 or cells[3] not in ("word", "context"):
            raise PddError(f"{path}: bad line {line[:80]!r}; regenerate it with `python3 tools/screen_lists.py`")
        out[cells[0]] = (cells[1], cells[3])
    return out


@lru_cache(maxsize=4)
def given_names(path: str | Path = NAMES_PATH) -> frozenset[str]:
    return frozenset(_list_lines(Path(path), "given-name list"))


# ---- the review file --------------------------------------------------------------------------
def read_review(path: str | Path = DEFAULT_REVIEW) -> dict[str, dict]:
    """{file_id: {"decision", "reason", "date"}} from data/rights_review.tsv; a missing file is empty.
    Parsed as strictly as data/exclusions.tsv: a header, blank lines and `#` comments aside, every line
    is `file_id<TAB>accept|reject<TAB>reason<TAB>YYYY-MM-DD`; anything else is one error naming file:line."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = files.read_regular(path, "the rights review file", hint="pass the reviewed decisions file (data/rights_review.tsv)")
        text = data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except OSError as exc:
        raise PddError(f"{path}: cannot read the rights review file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PddError(f"{path}:{line}: not UTF-8; re-save the rights review file as UTF-8") from None
    out: dict[str, dict] = {}
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.strip().split("\t")]
        if tuple(cells) == REVIEW_HEADER:
            continue
        where = f"{path}:{no}"
        if len(cells) != 4 or not cells[0]:
            hint = "; the cells must be separated by tabs (an editor may have turned them into spaces)" \
                if len(line.split()) >= 4 else ""
            raise PddError(f"{where}: expected 4 tab-separated cells (file_id, decision, reason, date), got {len(cells)}{hint}")
        fid, decision, reason, date = cells
        check_id(fid, f"{where}: file_id", "fix that line (one entry per line)")
        if decision not in DECISIONS:
            raise PddError(f"{where}: decision {decision!r}: must be accept or reject; fix that line")
        if id_problem(reason) or not reason:
            raise PddError(f"{where}: reason {reason!r}: must be non-empty printable text; fix that line")
        problem = exclusions._date_problem(date)
        if problem:
            raise PddError(f"{where}: date {date!r}: {problem}; fix that line")
        if fid in out:
            raise PddError(f"{where}: {fid} is reviewed twice (also line {out[fid]['line']}); keep one line per id")
        out[fid] = {"decision": decision, "reason": reason, "date": date, "line": no}
    return {k: {x: v[x] for x in ("decision", "reason", "date")} for k, v in out.items()}


# ---- what a row says ---------------------------------------------------------------------------
def row_text(*, file_id: str, external_id: str, title: str | None, labels: list[dict], evidence: dict) -> dict:
    """The texts the screen reads, from a store record or a snapshot row, whatever the source:
    {"paths": [...], "fields": [(field, text)], "creator": [...]}."""
    ev = evidence if isinstance(evidence, dict) else {}
    paths = [str(external_id or "")] + [str(a) for a in ev.get("aliases") or [] if isinstance(a, str)]
    fields: list[tuple[str, str]] = [("name", p.split("/")[-1]) for p in paths if p]
    fields.append(("title", str(title or "")))
    creators = []
    # in the order a pin stores them (canonical JSON), so a store record and its snapshot row give the same hits
    for lab in sorted(labels or [], key=canonical_json):
        text = str(lab.get("text") or "")
        if lab.get("field") == "creator":
            creators.append(text)
        elif lab.get("field") != "category":
            fields.append((f"label:{lab.get('field')}", text))
    for key in ("title", "description"):
        if isinstance(ev.get(key), str):
            fields.append((key, ev[key]))
    fields += [("keyword", k) for k in ev.get("keywords") or [] if isinstance(k, str)]
    ext = ev.get("extmetadata") if isinstance(ev.get("extmetadata"), dict) else {}
    fields += [(f"extmetadata:{k}", str(ext[k])) for k in ("ObjectName", "ImageDescription") if ext.get(k)]
    seen, unique = set(), []
    for f, t in fields:
        if t and (f, t) not in seen:
            seen.add((f, t))
            unique.append((f, t))
    return {"paths": [p for p in paths if p], "fields": unique, "creator": creators}


def _ngrams(words: list[str]):
    """(start, n-gram) for every run of 1 to MAX_WORDS words."""
    for n in range(1, MAX_WORDS + 1):
        for i in range(len(words) - n + 1):
            yield i, " ".join(words[i:i + n])


def hits(text: dict, brands_path=BRANDS_PATH, names_path=NAMES_PATH) -> list[list[str]]:
    """[rule, field, value, matched] for every signal; rule is mark or likeness."""
    out: list[list[str]] = []
    marks = brands(str(brands_path))
    all_words = set()
    normed = [(f, t, norm(pii.scrub(t)[0])) for f, t in text["fields"]]
    for _, _, n in normed:
        all_words.update(n.split())
    segs = [[norm(s) for s in p.split("/")[:-1]] for p in text["paths"]]
    context = bool(all_words & MARK_WORDS)
    for path, s in zip(text["paths"], segs):
        if (("icons" in s or any(x.endswith("theme") for x in s))
                and any(x in ICON_APP_DIRS for x in s)):
            out.append(["mark", "dir", path, "icon theme application folder"])
        for x in s:
            for _, gram in _ngrams(x.split()):
                if gram in PROTECTED:
                    out.append(["mark", "dir", path, gram])
    creator = {w for c in text["creator"] for w in norm(c).split()}
    for f, t, n in normed:
        words = n.split()
        for i, gram in _ngrams(words):
            if set(gram.split()) <= creator or len(gram.replace(" ", "")) < 2:
                continue  # the creator's own name is not a mark in the picture; one letter is no name
            if f not in STRONG_FIELDS and set(words[max(0, i - 2):i]) & TOOL_MENTION:
                continue
            if gram in PROTECTED:
                if f in ("name", "title", "label:title"):
                    out.append(["mark", f, t[:120], gram])
            elif gram in marks and (marks[gram][1] == "word" or context):
                out.append(["mark", f, t[:120], f"{gram} ({marks[gram][0]})"])
    # likeness
    top = [s for s in segs]
    in_people = any(any(x in PEOPLE_DIRS for x in s) and not any(x in PEOPLE_EXEMPT for x in s) for s in top)
    portrait = any(PORTRAIT.search(n) for _, _, n in normed)
    if in_people or portrait:
        names = given_names(str(names_path))
        for f, t, n in normed:
            words = [w for w in n.split() if w not in creator]
            for a, b in zip(words, words[1:]):
                if a in names and b.isalpha() and len(b) > 1:
                    out.append(["likeness", f, t[:120], f"person named: {a} {b}"])
                    break
    for f, t, n in normed:
        if f in ("title", "description", "label:description", "label:caption", "extmetadata:ImageDescription"):
            m = TRACED.search(n) or TRACED_AFTER.search(n) or TRACED_ANYWHERE.search(n)
            if m:
                out.append(["likeness", f, t[:120], f"traced: {m.group(0)}"])
    unique, seen = [], set()
    for h in out:
        if tuple(h) not in seen:
            seen.add(tuple(h))
            unique.append(h)
    return unique


@dataclass(frozen=True)
class ScreenDecision:
    accepted: bool
    kind: str          # 'clear' | 'mark' | 'likeness' | 'reviewed'
    reason: str
    evidence: dict


def decide(text: dict, file_id: str, review: dict | None = None, brands_path=BRANDS_PATH, names_path=NAMES_PATH) -> ScreenDecision:
    """The screen's decision for one licence-accepted file; REVIEW is read_review()'s dict."""
    found = hits(text, brands_path, names_path)
    entry = (review or {}).get(file_id)
    ev: dict = {"decider": DECIDER}
    if found:
        ev["hits"] = found
    if entry:
        ev["review"] = dict(entry)
    if entry and entry["decision"] == "reject":
        return ScreenDecision(False, "reviewed", f"rejected: reviewed: {entry['reason']} ({entry['date']})", ev)
    if found and not (entry and entry["decision"] == "accept"):
        # a mark in the file's name, folders, title or keywords first, then a likeness, then a mark only in prose
        strong = [h for h in found if h[0] == "mark" and h[1] in STRONG_FIELDS]
        rule, field, value, matched = (strong or [h for h in found if h[0] == "likeness"] or found)[0]
        return ScreenDecision(False, rule, f"rejected: {rule}: {matched!r} in {field} {value[:80]!r}", ev)
    if found:
        return ScreenDecision(True, "clear", f"accepted after review: {entry['reason']} ({entry['date']})", ev)
    return ScreenDecision(True, "clear", "clear", ev)


def screen_record(rec, review: dict | None):
    """A store FileRecord after the screen: an accepted record stays accepted (its licence evidence gains
    `screen`) or becomes rejected with the screen's reason and without its bytes. Returns (rec, kind)."""
    if rec.status != "accepted" or rec.licence is None:
        return rec, None
    labels = [lab.as_dict() for lab in rec.labels]
    text = row_text(file_id=rec.file_id, external_id=rec.external_id, title=rec.title, labels=labels,
                    evidence=rec.licence.evidence)
    d = decide(text, rec.file_id, review)
    rec.licence.evidence["screen"] = d.evidence
    if d.accepted:
        return rec, None
    rec.status, rec.reason, rec.data = "rejected", d.reason, None
    rec.mime = rec.width = rec.height = None
    return rec, d.kind


def row_problem(row: dict, evidence: dict, review: dict | None) -> str | None:
    """The audit's re-decision of one snapshot row with today's lists and review file (None when clear)."""
    try:
        labels = json.loads(row.get("labels") or "[]")
    except (TypeError, ValueError):
        labels = []
    text = row_text(file_id=row.get("file_id") or "", external_id=row.get("external_id") or "", title=row.get("title"),
                    labels=labels if isinstance(labels, list) else [], evidence=evidence)
    d = decide(text, row.get("file_id") or "", review)
    return None if d.accepted else f"the marks and likeness screen rejects it ({d.reason})"

