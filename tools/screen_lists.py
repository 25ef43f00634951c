#!/usr/bin/env python3
"""Regenerate the word lists the marks-and-likeness screen reads (pdd/rights/screen.py):

    python3 tools/screen_lists.py            # npm pack simple-icons@VERSION, pip download names==VERSION
    python3 tools/screen_lists.py --simple-icons simple-icons-16.37.0.tgz --names names-0.3.0.tar.gz

data/rights/brands.tsv        brand and organisation names (title, slug) from npm's `simple-icons`
                              (CC0-1.0: its data file may be copied); `match` says how a name is matched:
                              `word` anywhere, `context` (a name that is also an ordinary English word
                              or a given name, or shorter than 3 characters) only beside a mark word.
                              Ordinary words are those of Debian's `wamerican` list (/usr/share/dict/words,
                              `apt-get install wamerican`), used here only, never at build time.
data/rights/given-names.txt   given names (the US Census 1990 first-name lists, a US government work in
                              the public domain, as shipped in PyPI's `names` package, MIT), less
                              the ordinary lower-case English words

Both files name their source, version and licence in their header; the build reads only them, so a
fresh machine needs neither npm nor the dictionary. Same inputs give the same bytes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIMPLE_ICONS = "16.37.0"
NAMES = "0.3.0"
DICT = Path("/usr/share/dict/words")
# names of open formats and protocols: a file "converted to SVG" names a format, not a mark (context only)
FORMATS = {"svg", "xml", "html", "html5", "css", "css3", "json", "pdf", "jpeg", "png", "gif", "webp", "mp3", "ogg",
           "midi", "rss", "unicode", "ascii", "markdown", "opentype", "truetype", "utf 8"}


def norm(text: str) -> str:
    """What the screen matches on: accents dropped, lower case, every run of non-alphanumerics one space."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def fetch(cmd: list[str], cwd: Path, pattern: str) -> Path:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    found = sorted(cwd.glob(pattern))
    if not found:
        sys.exit(f"screen_lists: {' '.join(cmd)} gave no {pattern}")
    return found[0]


def brands(tgz: Path, words: set[str], given: set[str]) -> str:
    with tarfile.open(tgz) as tar:
        data = json.load(tar.extractfile("package/data/simple-icons.json"))
        pkg = json.load(tar.extractfile("package/package.json"))
    rows = {}
    for icon in data:
        for name in (icon["title"], icon["slug"]):
            key = norm(name)
            if not key:
                continue
            generic = (len(key.replace(" ", "")) < 3 or key in FORMATS
                       or all(w in words or w in given for w in key.split()))
            rows.setdefault(key, (icon["title"], icon["slug"], "context" if generic else "word"))
    head = [f"# brand and organisation names: npm package simple-icons {pkg['version']} ({pkg['license']}), "
            "package/data/simple-icons.json, titles and slugs only",
            "# regenerate with tools/screen_lists.py; `context` names are ordinary English words (Debian wamerican) "
            "or given names, names of open formats, or shorter than 3 characters",
            "name\ttitle\tslug\tmatch"]
    lines = [f"{k}\t{t}\t{s}\t{m}" for k, (t, s, m) in sorted(rows.items())]
    return "\n".join(head + lines) + "\n"


def read_given(sdist: Path, words: set[str]) -> set[str]:
    """The given names, less those that are also ordinary lower-case English words ("will", "rose", "man")
    unless they are among the 100 most frequent of their list ("john", "mark")."""
    names: set[str] = set()
    common: set[str] = set()
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.endswith((".male.first", ".female.first")):
                for rank, line in enumerate(tar.extractfile(member).read().decode("ascii").splitlines()):
                    if line.split():
                        names.add(line.split()[0].lower())
                        if rank < 100:
                            common.add(line.split()[0].lower())
    return (names - words) | common


def given_names(names: set[str]) -> str:
    head = [f"# given names: US Census 1990 first-name lists (public domain, US government work), as shipped in "
            f"PyPI names {NAMES} (MIT), names/dist.male.first and names/dist.female.first, less the lower-case words "
            "of Debian wamerican outside each list's 100 most frequent",
            "# regenerate with tools/screen_lists.py"]
    return "\n".join(head + sorted(names)) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simple-icons", type=Path, help=f"simple-icons-{SIMPLE_ICONS}.tgz (default: npm pack)")
    ap.add_argument("--names", type=Path, help=f"names-{NAMES}.tar.gz (default: pip download)")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "rights")
    args = ap.parse_args()
    if not DICT.is_file():
        sys.exit(f"screen_lists: {DICT} is missing: apt-get install wamerican")
    words = {norm(w) for w in DICT.read_text(encoding="utf-8", errors="replace").split() if w[:1].islower()}
    with tempfile.TemporaryDirectory() as tmp:
        tgz = args.simple_icons or fetch(["npm", "pack", f"simple-icons@{SIMPLE_ICONS}"], Path(tmp), "simple-icons-*.tgz")
        sdist = args.names or fetch([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                     f"names=={NAMES}", "-d", tmp], Path(tmp), "names-*.tar.gz")
        args.out.mkdir(parents=True, exist_ok=True)
        given = read_given(sdist, words)
        (args.out / "brands.tsv").write_text(brands(tgz, words, given), encoding="utf-8")
        (args.out / "given-names.txt").write_text(given_names(given), encoding="utf-8")
    print(f"wrote {args.out / 'brands.tsv'} and {args.out / 'given-names.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
