"""A MediaWiki-compatible offline mirror: the subset of api.php the scraper uses, plus the images.

Responses are generated from a catalogue (files + categories), never replayed, so the same code
serves the recorded fixture (``Catalogue.from_fixture``: the JSON shapes in shared/fixtures/commons
come back identical) and generated catalogues of 10,000+ files (``Catalogue.synthetic``).

Implemented: ``list=categorymembers`` (cmtype subcat|file|page, cmlimit, cmcontinue
``type|hex(sortkey)|pageid``, ``continue: "-||"``), ``generator=categorymembers`` with
``prop=imageinfo`` (pages ordered by pageid, subcategories among them with ns 14, ``gcmcontinue``,
prop continuation ``iicontinue`` when more thumbnails than ``transform_limit`` are asked for in the
first request of a batch, 50 per continuation),
``prop=imageinfo`` with ``titles=``/``pageids=`` (``iistart`` history continuation),
``prop=categoryinfo``, ``action=wbgetentities`` (SDC), formatversion 1 and 2, gzip, the maxlag
check, the User-Agent policy (403), and per-request fault injection (see ``FAULTS``).

Simplifications (documented): synthetic originals are tiny, so their thumbnail is the original
(the T25834 unscaled rule: thumburl == url); sortkeys are upper-cased titles.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from PIL import Image

from pdd.core.errors import PddError

API_PATH = "/w/api.php"
BASE = "{BASE}"
TYPE_ORDER = {"page": 0, "subcat": 1, "file": 2}
NS = {"page": 0, "subcat": 14, "file": 6}
MAX_LIMIT = 500
FAULTS = ("429", "503", "maxlag", "ratelimited", "timeout", "reset", "truncate", "badjson", "badsha1")
UA_POLICY = re.compile(r"^\S+/\S+ \((?=[^)]*(@|https?://))[^)]*\)")
DOCREF = ("See https://commons.wikimedia.org/w/api.php for API usage. Subscribe to the mediawiki-api-announce "
          "mailing list at &lt;https://lists.wikimedia.org/postorius/lists/mediawiki-api-announce.lists.wikimedia.org/&gt; "
          "for notice of API deprecations and breaking changes.")
SERVEDBY = "mw-api-ext.eqiad.main-6c8d9b7f4d-x2kqp"
UA_403 = "Forbidden. Please comply with the User-Agent policy: https://meta.wikimedia.org/wiki/User-Agent_policy\n"


def sortkey(title: str) -> str:
    """Commons sorts category members by the upper-cased title without its namespace."""
    return title.split(":", 1)[1].upper() if ":" in title else title.upper()


def dbkey(title: str) -> str:
    return (title.split(":", 1)[1] if ":" in title else title).replace(" ", "_")


# ---------------------------------------------------------------------------------------------
# catalogue
# ---------------------------------------------------------------------------------------------
@dataclass
class MFile:
    pageid: int
    title: str
    make_imageinfo: Callable[[], dict] | None = None  # lazy for big synthetic catalogues
    imageinfo_data: dict | None = None
    sdc: dict | None = None  # the MediaInfo entity, None = no structured data yet
    history_start: str | None = None  # iistart of an older upload (titles= queries continue into it)

    @property
    def imageinfo(self) -> dict:
        if self.imageinfo_data is None:
            self.imageinfo_data = self.make_imageinfo()
        return self.imageinfo_data

    @imageinfo.setter
    def imageinfo(self, value: dict) -> None:
        self.imageinfo_data = value


@dataclass
class MCategory:
    title: str
    pageid: int
    subcats: list[str] = field(default_factory=list)
    files: list[int] = field(default_factory=list)


class Catalogue:
    def __init__(self):
        self.categories: dict[str, MCategory] = {}
        self.files: dict[int, MFile] = {}
        self.by_title: dict[str, int] = {}
        self.media: dict[str, Callable[[], bytes]] = {}  # URL-decoded path -> bytes
        self.media_root: Path | None = None
        self.file_categories: dict[int, list[str]] = {}

    def add_file(self, f: MFile) -> None:
        self.files[f.pageid] = f
        self.by_title[f.title] = f.pageid

    def media_bytes(self, path: str) -> bytes | None:
        """Bytes for a URL-decoded path, or None (404). Fixture media never leave media_root."""
        if path in self.media:
            return self.media[path]()
        if self.media_root is not None and "\0" not in path:
            root = self.media_root.resolve()
            target = (root / path.lstrip("/")).resolve()
            if target.is_relative_to(root) and target.is_file():
                return target.read_bytes()
        return None

    # ---- the recorded fixture ----------------------------------------------------------------
    @classmethod
    def from_fixture(cls, root: str | Path) -> "Catalogue":
        root = Path(root)
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        cat = cls()
        cat.media_root = root / "media"
        infos: dict[int, dict] = {}
        for path in sorted((root / "api").glob("gen_files_*.json")):
            if path.name.endswith(".fv1.json"):
                continue
            for page in json.loads(path.read_text(encoding="utf-8"))["query"]["pages"]:
                if page.get("imageinfo"):
                    infos[page["pageid"]] = page["imageinfo"][0]
        by_key = {}
        for key, f in index["files"].items():
            pid = f["pageid"]
            by_key[key] = pid
            cat.add_file(MFile(pid, f["title"], imageinfo_data=infos[pid]))
        for path in sorted((root / "api").glob("prop_imageinfo_single_*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            start = data.get("continue", {}).get("iistart")
            for page in data["query"]["pages"]:
                if start and page["pageid"] in cat.files:
                    cat.files[page["pageid"]].history_start = start
        sdc = json.loads((root / "api" / "sdc_wbgetentities.json").read_text(encoding="utf-8"))
        for mid, ent in sdc["entities"].items():
            pid = int(mid[1:])
            if "missing" not in ent and pid in cat.files:
                cat.files[pid].sdc = ent
        for title, c in index["categories"].items():
            cat.categories[title] = MCategory(title, c["pageid"], list(c["subcats"]), [by_key[k] for k in c["files"]])
        return cat

    # ---- generated catalogues -------------------------------------------------------------------
    @classmethod
    def synthetic(cls, n_files: int, seed: int = 0, titles: list[str] | None = None, n_categories: int | None = None,
                  root_title: str = "Category:Synthetic paintings") -> "Catalogue":
        """A deterministic catalogue: a category tree with a cycle and a diamond, ~85 % PD/CC0 files,
        the rest CC BY-SA, unlicensed or SVG; tiny real images generated on demand."""
        cat = cls()
        k = n_categories or max(3, min(60, n_files // 150))
        subs = [f"Category:Synthetic paintings group {i:03d}" for i in range(k)]
        cat.categories[root_title] = MCategory(root_title, 90_000_000, subcats=list(subs))
        for i, title in enumerate(subs):
            c = MCategory(title, 90_000_001 + i)
            if i + 1 < k:
                c.subcats.append(subs[i + 1])  # chain: reachable from root and from the previous group (diamond)
            cat.categories[title] = c
        cat.categories[subs[-1]].subcats.append(root_title)  # cycle back to the root
        titles = list(titles or [])
        for i in range(n_files):
            pid = 10_000_000 + seed * 1_000_000 + i * 7 + 3
            kind = _synthetic_kind(i)
            ext = {"svg": "svg", "png": "png"}.get(kind, "jpg")
            title = f"File:{titles[i]}" if i < len(titles) else f"File:Synthetic painting {seed}-{i:05d}.{ext}"
            f = MFile(pid, title)
            f.make_imageinfo = _synthetic_info_factory(cat, f, kind, seed)
            if i % 3 == 0 and kind in ("pd", "png", "cc0"):
                f.sdc = _synthetic_sdc(f, kind, i)
            cat.add_file(f)
            cat.categories[subs[i % k]].files.append(pid)
            cat.file_categories[pid] = [subs[i % k]]
            if i % 7 == 0:
                cat.categories[root_title].files.append(pid)  # in two categories
                cat.file_categories[pid].append(root_title)
        return cat

    @classmethod
    def load(cls, spec: str) -> "Catalogue":
        """`pdd mirror serve` catalogue: a fixture folder (with index.json) or `synthetic:N[:SEED]`."""
        if spec.startswith("synthetic:"):
            parts = spec.split(":")
            try:
                return cls.synthetic(int(parts[1]), seed=int(parts[2]) if len(parts) > 2 else 0)
            except ValueError:
                raise PddError(f"bad catalogue spec {spec!r}: use synthetic:N or synthetic:N:SEED") from None
        path = Path(spec)
        if (path / "index.json").is_file():
            return cls.from_fixture(path)
        raise PddError(f"{spec}: not a catalogue (a fixture folder with index.json, or synthetic:N[:SEED])")


def _synthetic_kind(i: int) -> str:
    if i % 20 == 5:
        return "bysa"
    if i % 40 == 11:
        return "nolicence"
    if i % 50 == 17:
        return "svg"
    if i % 25 == 3:
        return "cc0"
    if i % 9 == 4:
        return "png"
    return "pd"


def _synthetic_image(pageid: int, fmt: str) -> bytes:
    rnd = random.Random(pageid)
    w, h = 16 + rnd.randrange(3) * 8, 16 + rnd.randrange(2) * 8
    img = Image.new("RGB", (w, h), tuple(rnd.randrange(256) for _ in range(3)))
    img.paste(tuple(rnd.randrange(256) for _ in range(3)), (0, 0, w // 2, h // 2))
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


def _em(value, source="commons-desc-page", hidden=True) -> dict:
    d = {"value": value, "source": source}
    if hidden:
        d["hidden"] = ""
    return d


def _synthetic_info_factory(cat: Catalogue, f: MFile, kind: str, seed: int) -> Callable[[], dict]:
    def make() -> dict:
        name = dbkey(f.title)
        md5 = hashlib.md5(name.encode("utf-8")).hexdigest()
        rel = f"/wikipedia/commons/{md5[0]}/{md5[:2]}/{urllib.parse.quote(name, safe='')}"
        if kind == "svg":
            data = (b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="160"><text x="10" y="80">'
                    + str(f.pageid).encode() + b"</text></svg>")
            w, h, mime, mediatype = 512, 160, "image/svg+xml", "DRAWING"
            thumb_rel = f"/wikipedia/commons/thumb/{md5[0]}/{md5[:2]}/{urllib.parse.quote(name, safe='')}/960px-{urllib.parse.quote(name, safe='')}.png"
            tdata = _synthetic_image(f.pageid, "PNG")
            cat.media[urllib.parse.unquote(thumb_rel)] = lambda: tdata
            tw, th = 960, 300
        else:
            fmt = "PNG" if kind == "png" else "JPEG"
            data = _synthetic_image(f.pageid, fmt)
            w, h = Image.open(io.BytesIO(data)).size
            mime, mediatype = ("image/png" if fmt == "PNG" else "image/jpeg"), "BITMAP"
            thumb_rel, tw, th = rel, w, h  # smaller than any thumb width: thumburl == url (T25834)
        cat.media[urllib.parse.unquote(rel)] = lambda: data
        desc_title = urllib.parse.quote(name, safe="(),")
        ts = f"20{10 + f.pageid % 15:02d}-0{1 + f.pageid % 9}-1{f.pageid % 10} 12:{f.pageid % 60:02d}:00"
        cats = [t.split(":", 1)[1] for t in cat.file_categories.get(f.pageid, [])]
        em = {
            "DateTime": _em(ts, "mediawiki-metadata"),
            "ObjectName": _em(f"Synthetic painting {f.pageid}", "commons-desc-page"),
            "CommonsMetadataExtension": _em(1.2, "extension"),
            "Categories": _em("|".join(sorted(cats + (["PD-Art (PD-old-100)"] if kind in ("pd", "png", "svg") else []))), "commons-categories"),
            "Assessments": _em("", "commons-categories"),
            "ImageDescription": _em(f'<span lang="en">Generated test painting number {f.pageid}.</span>', hidden=False),
            "DateTimeOriginal": _em(str(1800 + f.pageid % 90), hidden=False),
            "Credit": _em('<span class="int-own-work" lang="en">Example Museum</span>'),
            "Artist": _em(f"<bdi>Painter {f.pageid % 97}</bdi>", hidden=False),
        }
        if kind in ("pd", "png", "svg"):
            em.update({"LicenseShortName": _em("Public domain"), "UsageTerms": _em("Public domain"),
                       "AttributionRequired": _em("false"), "Copyrighted": _em("False"), "Restrictions": _em(""),
                       "License": _em("pd", "commons-templates")})
        elif kind == "cc0":
            em.update({"LicenseShortName": _em("CC0"), "UsageTerms": _em("Creative Commons Zero, Public Domain Dedication"),
                       "AttributionRequired": _em("false"),
                       "LicenseUrl": _em("http://creativecommons.org/publicdomain/zero/1.0/deed.en"),
                       "Copyrighted": _em("True"), "Restrictions": _em(""), "License": _em("cc0", "commons-templates")})
        elif kind == "bysa":
            em.update({"LicenseShortName": _em("CC BY-SA 4.0"), "UsageTerms": _em("Creative Commons Attribution-Share Alike 4.0"),
                       "AttributionRequired": _em("true"), "LicenseUrl": _em("https://creativecommons.org/licenses/by-sa/4.0"),
                       "Copyrighted": _em("True"), "Restrictions": _em(""), "License": _em("cc-by-sa-4.0", "commons-templates")})
        else:
            em["Restrictions"] = _em("")
        info = {"size": len(data), "width": w, "height": h, "thumburl": BASE + thumb_rel, "thumbwidth": tw, "thumbheight": th}
        if kind == "svg":
            info["responsiveUrls"] = {"1.5": BASE + thumb_rel.replace("/960px-", "/1440px-")}
        info.update({
            "url": BASE + rel,
            "descriptionurl": f"https://commons.wikimedia.org/wiki/File:{desc_title}",
            "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={f.pageid}",
            "sha1": hashlib.sha1(data).hexdigest(),
            "extmetadata": em,
            "mime": mime,
            "mediatype": mediatype,
        })
        return info

    return make


def _item_claim(mid: str, prop: str, qid: str, n: int) -> dict:
    return {"mainsnak": {"snaktype": "value", "property": prop, "hash": hashlib.sha1(f"{prop}{qid}".encode()).hexdigest(),
                         "datavalue": {"value": {"entity-type": "item", "numeric-id": int(qid[1:]), "id": qid},
                                       "type": "wikibase-entityid"}},
            "type": "statement", "id": f"{mid}${n:08d}-0000-0000-0000-000000000000", "rank": "normal"}


def _synthetic_sdc(f: MFile, kind: str, i: int) -> dict:
    mid = f"M{f.pageid}"
    statements = {"P6216": [_item_claim(mid, "P6216", "Q88088423" if kind == "cc0" else "Q19652", 1)]}
    if kind == "cc0":
        statements["P275"] = [_item_claim(mid, "P275", "Q6938433", 2)]
    labels = {"en": {"language": "en", "value": f"Synthetic painting {f.pageid}, caption"}} if i % 2 == 0 else {}
    return {"pageid": f.pageid, "ns": 6, "title": f.title, "lastrevid": 900_000_000 + f.pageid, "modified": "2025-11-20T10:15:42Z",
            "type": "mediainfo", "id": mid, "labels": labels, "descriptions": {}, "statements": statements}


# ---------------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------------
class ApiFailure(Exception):
    def __init__(self, code: str, info: str):
        super().__init__(info)
        self.code, self.info = code, info


def api_error(code: str, info: str, fv1: bool = False, **extra) -> dict:
    err = {"code": code, "info": info, **extra}
    err["*" if fv1 else "docref"] = DOCREF
    return {"error": err, "servedby": SERVEDBY}


def _limit(value: str | None, default: int = 10) -> int:
    if value is None:
        return default
    if value == "max":
        return MAX_LIMIT
    try:
        return max(1, min(MAX_LIMIT, int(value)))
    except ValueError:
        raise ApiFailure("badinteger", f'Invalid value "{value}" for integer parameter "limit".') from None


class Api:
    """Pure function of a catalogue: query parameters in, a JSON-ready dict out."""

    def __init__(self, catalogue: Catalogue, transform_limit: int = 50):
        self.cat = catalogue
        self.transform_limit = transform_limit

    def members(self, title: str, types: list[str]) -> list[tuple]:
        c = self.cat.categories.get(title)
        if c is None:
            return []
        rows = []
        if "subcat" in types:
            for st in c.subcats:
                sc = self.cat.categories.get(st)
                if sc is not None:
                    rows.append((TYPE_ORDER["subcat"], sortkey(st), sc.pageid, st, "subcat"))
        if "file" in types:
            for pid in c.files:
                f = self.cat.files[pid]
                rows.append((TYPE_ORDER["file"], sortkey(f.title), pid, f.title, "file"))
        rows.sort()
        return rows

    def _slice(self, rows: list[tuple], cont: str | None, limit: int) -> tuple[list[tuple], str | None]:
        start = 0
        if cont is not None:
            parts = cont.split("|")
            try:
                key = (TYPE_ORDER[parts[0]], bytes.fromhex(parts[1]).decode("utf-8"), int(parts[2]))
            except (KeyError, IndexError, ValueError):
                raise ApiFailure("badcontinue", "Invalid continue param. You should pass the original value returned by the previous query.") from None
            while start < len(rows) and rows[start][:3] < key:
                start += 1
        chunk = rows[start:start + limit]
        nxt = rows[start + limit] if start + limit < len(rows) else None
        token = f"{nxt[4]}|{nxt[1].encode('utf-8').hex()}|{nxt[2]}" if nxt else None
        return chunk, token

    def query(self, q: dict) -> dict:
        action = q.get("action")
        if action == "wbgetentities":
            return self.wbgetentities(q)
        if action != "query":
            raise ApiFailure("badvalue", f'Unrecognized value for parameter "action": {action}.')
        if q.get("list") == "categorymembers":
            return self.list_members(q)
        if q.get("generator") == "categorymembers":
            return self.generator_members(q)
        if q.get("prop") == "categoryinfo":
            return self.categoryinfo(q)
        if q.get("prop") == "imageinfo" and ("titles" in q or "pageids" in q):
            return self.imageinfo_titles(q)
        raise ApiFailure("badvalue", "This mirror implements only the query modules the scraper uses.")

    def list_members(self, q: dict) -> dict:
        types = q.get("cmtype", "page|subcat|file").split("|")
        rows = self.members(q.get("cmtitle", ""), types)
        chunk, token = self._slice(rows, q.get("cmcontinue"), _limit(q.get("cmlimit")))
        props = q.get("cmprop", "ids|title").split("|")
        out = []
        for _o, _sk, pid, title, typ in chunk:
            m = {}
            if "ids" in props:
                m["pageid"] = pid
            if "title" in props:
                m["ns"], m["title"] = NS[typ], title
            if "type" in props:
                m["type"] = typ
            out.append(m)
        resp: dict = {"batchcomplete": True}
        if token:
            resp["continue"] = {"cmcontinue": token, "continue": "-||"}
        resp["query"] = {"categorymembers": out}
        return resp

    def _page(self, f: MFile, with_info: bool) -> dict:
        p = {"pageid": f.pageid, "ns": 6, "title": f.title}
        if with_info:
            p["imagerepository"] = "local"
            p["imageinfo"] = [f.imageinfo]
        return p

    def _ii_order(self, files: list[MFile]) -> list[MFile]:
        return sorted(files, key=lambda f: dbkey(f.title))

    def _ii_ts(self, f: MFile) -> str:
        dt = f.imageinfo.get("extmetadata", {}).get("DateTime", {}).get("value", "")
        return re.sub(r"\D", "", str(dt))[:14] or "20000101000000"

    def generator_members(self, q: dict) -> dict:
        types = q.get("gcmtype", "page|subcat|file").split("|")
        rows = self.members(q.get("gcmtitle", ""), types)
        chunk, token = self._slice(rows, q.get("gcmcontinue"), _limit(q.get("gcmlimit")))
        files = [self.cat.files[r[2]] for r in chunk if r[4] == "file"]
        with_ii = q.get("prop") == "imageinfo"
        thumbs = with_ii and "iiurlwidth" in q
        ordered = self._ii_order(files)
        todo = ordered
        if "iicontinue" in q:
            key = q["iicontinue"].split("|")[0]
            todo = [f for f in ordered if dbkey(f.title) >= key]
        budget = 50 if "iicontinue" in q else self.transform_limit
        served = todo[:budget] if thumbs else todo
        rest = todo[len(served):]
        served_ids = {f.pageid for f in served}
        # subcategories (gcmtype=subcat) are pages too, with ns 14 and no imageinfo
        members = [(r[2], {"pageid": r[2], "ns": 14, "title": r[3]}) for r in chunk if r[4] == "subcat"]
        members += [(f.pageid, self._page(f, f.pageid in served_ids)) for f in files]
        pages = [p for _pid, p in sorted(members, key=lambda m: m[0])]
        resp: dict = {}
        if rest:
            cont = {"iicontinue": f"{dbkey(rest[0].title)}|{self._ii_ts(rest[0])}"}
            gen_keys = [k for k in ("gcmcontinue",) if k in q]
            cont.update({k: q[k] for k in gen_keys})
            cont["continue"] = "|".join(gen_keys) + "||"
            resp["continue"] = cont
        else:
            resp["batchcomplete"] = True
            if token:
                resp["continue"] = {"gcmcontinue": token, "continue": "gcmcontinue||"}
        if pages:
            resp["query"] = {"pages": pages}
        return resp

    def _resolve_pages(self, q: dict) -> list[dict | MFile]:
        out = []
        if "titles" in q:
            for t in q["titles"].split("|"):
                pid = self.cat.by_title.get(t)
                out.append(self.cat.files[pid] if pid is not None else {"ns": 6, "title": t, "missing": True})
        for p in q.get("pageids", "").split("|") if q.get("pageids") else []:
            f = self.cat.files.get(int(p)) if p.isdigit() else None
            out.append(f if f is not None else {"pageid": int(p) if p.isdigit() else 0, "missing": True})
        return out

    def imageinfo_titles(self, q: dict) -> dict:
        found = self._resolve_pages(q)
        files = sorted((f for f in found if isinstance(f, MFile)), key=lambda f: f.pageid)
        pages = [f for f in found if not isinstance(f, MFile)] + [self._page(f, True) for f in files]
        resp: dict = {}
        if len(files) == 1 and files[0].history_start and "iistart" not in q:
            resp["continue"] = {"iistart": files[0].history_start, "continue": "||"}
        else:
            resp["batchcomplete"] = True
        resp["query"] = {"pages": pages}
        return resp

    def categoryinfo(self, q: dict) -> dict:
        pages = []
        for t in q.get("titles", "").split("|"):
            c = self.cat.categories.get(t)
            if c is None:
                pages.append({"ns": 14, "title": t, "missing": True})
                continue
            n_sub, n_files = len(c.subcats), len(c.files)
            pages.append({"pageid": c.pageid, "ns": 14, "title": t,
                          "categoryinfo": {"size": n_sub + n_files, "pages": 0, "files": n_files, "subcats": n_sub}})
        return {"batchcomplete": True, "query": {"pages": pages}}

    def wbgetentities(self, q: dict) -> dict:
        ids = [i for i in q.get("ids", "").split("|") if i]
        if len(ids) > 50:
            raise ApiFailure("toomanyvalues", 'Too many values supplied for parameter "ids". The limit is 50.')
        ents = {}
        for mid in ids:
            f = self.cat.files.get(int(mid[1:])) if mid[1:].isdigit() else None
            ents[mid] = f.sdc if f is not None and f.sdc is not None else {"id": mid, "missing": ""}
        return {"entities": ents, "success": 1}


def to_fv1(resp: dict) -> dict:
    out = dict(resp)
    if out.get("batchcomplete") is True:
        out["batchcomplete"] = ""
    query = out.get("query")
    if query and isinstance(query.get("pages"), list):
        pages, neg = {}, -1
        for p in query["pages"]:
            p = {k: ("" if v is True else v) for k, v in p.items()}
            if "pageid" in p:
                pages[str(p["pageid"])] = p
            else:
                pages[str(neg)] = p
                neg -= 1
        out["query"] = {**query, "pages": pages}
    return out


# ---------------------------------------------------------------------------------------------
# the HTTP server
# ---------------------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    retry_after: int = 1


class MirrorServer:
    """Serve a catalogue on 127.0.0.1; ``inject()`` faults; ``log`` records every request."""

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 transform_limit: int = 50, lag: float = 0.0, timeout_delay: float = 3.0, check_user_agent: bool = True):
        self.catalogue = catalogue
        self.api = Api(catalogue, transform_limit)
        self.latency, self.lag, self.timeout_delay, self.check_user_agent = latency, lag, timeout_delay, check_user_agent
        self.faults: dict[tuple[str, int], Fault] = {}
        self.counts = {"api": 0, "media": 0}
        self.log: list[dict] = []
        self.lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def do_GET(self):  # noqa: N802
                mirror._handle(self)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # faults break connections on purpose

        self.httpd = Server((host, port), Handler)
        self.thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.base + API_PATH

    def start(self) -> "MirrorServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "MirrorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, kind: str, on: str = "api", at: int | list[int] = 1, retry_after: int = 1) -> None:
        """Make request number ``at`` (1-based, counted separately for 'api' and 'media') fail with ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind}; one of {FAULTS}")
        for n in [at] if isinstance(at, int) else at:
            self.faults[(on, n)] = Fault(kind, retry_after)

    def requests(self, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.log if kind is None or e["kind"] == kind]

    # ---- one request ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        t0 = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        split = urllib.parse.urlsplit(h.path)
        kind = "api" if split.path == API_PATH else "media"
        with self.lock:
            self.counts[kind] += 1
            n = self.counts[kind]
            fault = self.faults.get((kind, n))
            entry = {"t": t0, "kind": kind, "n": n, "path": split.path, "fault": fault.kind if fault else None,
                     "params": dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
                     "user_agent": h.headers.get("User-Agent", ""), "accept_encoding": h.headers.get("Accept-Encoding", "")}
            self.log.append(entry)
        gz = "gzip" in entry["accept_encoding"]
        if self.check_user_agent and not UA_POLICY.match(entry["user_agent"]):
            return self._send(h, entry, 403, UA_403.encode(), "text/plain; charset=utf-8", gz=False)
        if fault and fault.kind in ("429", "503"):
            return self._send(h, entry, int(fault.kind), b"Too many requests. See https://wikitech.wikimedia.org/wiki/Robot_policy\n",
                              "text/plain; charset=utf-8", headers={"Retry-After": str(fault.retry_after)}, gz=False)
        if fault and fault.kind == "reset":
            entry["status"] = "reset"
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if fault and fault.kind == "timeout":
            time.sleep(self.timeout_delay)
        if kind == "api":
            q = entry["params"]
            fv1 = q.get("formatversion", "1") != "2" and q.get("action") == "query"
            headers = {}
            try:
                if fault and fault.kind in ("maxlag", "ratelimited") or (self.lag and float(q.get("maxlag", "inf")) < self.lag):
                    code = fault.kind if fault else "maxlag"
                    if code == "maxlag":
                        lag = max(int(self.lag), 7)
                        resp = api_error("maxlag", f"Waiting for 10.64.48.109: {lag} seconds lagged.", fv1, host="10.64.48.109", lag=lag, type="db")
                        headers = {"Retry-After": str(fault.retry_after if fault else 5), "X-Database-Lag": str(lag), "MediaWiki-API-Error": "maxlag"}
                    else:
                        resp = api_error("ratelimited", "As an anti-abuse measure, you are limited from performing this action too many times in a short space of time, and you have exceeded this limit. Please try again in a few minutes.", fv1)
                        headers = {"MediaWiki-API-Error": "ratelimited"}
                else:
                    resp = self.api.query(q)
                    if fv1:
                        resp = to_fv1(resp)
            except ApiFailure as exc:
                resp = api_error(exc.code, exc.info, fv1)
                headers = {"MediaWiki-API-Error": exc.code}
            body = json.dumps(resp, ensure_ascii=fv1, separators=(",", ":")).replace(BASE, self.base).encode("utf-8")
            if fault and fault.kind == "badjson":
                body = body[: len(body) // 2] + b"<!-- upstream error -->"
            return self._send(h, entry, 200, body, "application/json; charset=utf-8", headers=headers, gz=gz,
                              truncate=bool(fault and fault.kind == "truncate"))
        data = self.catalogue.media_bytes(urllib.parse.unquote(split.path))
        if data is None:
            return self._send(h, entry, 404, b"Not Found\n", "text/plain; charset=utf-8", gz=False)
        if fault and fault.kind in ("badsha1", "badjson"):
            data = data[:-8] + bytes(b ^ 0x5A for b in data[-8:-2]) + data[-2:]
        ctype = {".png": "image/png", ".svg": "image/svg+xml", ".tif": "image/tiff"}.get(Path(split.path).suffix.lower(), "image/jpeg")
        return self._send(h, entry, 200, data, ctype, gz=False, truncate=bool(fault and fault.kind == "truncate"))

    def _send(self, h, entry, status, body, ctype, headers=None, gz=False, truncate=False) -> None:
        entry["status"] = status
        if gz:
            body = gzip.compress(body, mtime=0)
        entry["gzip"] = gz
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            if gz:
                h.send_header("Content-Encoding", "gzip")
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            if truncate:
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body[: len(body) // 2] if truncate else body)
            h.wfile.flush()
            if truncate:
                h.close_connection = True
        except OSError:
            h.close_connection = True


def parse_fault(text: str) -> tuple[str, str, list[int], int]:
    """`KIND:ON:N[,N...][:RETRY_AFTER]` (as `pdd mirror serve --fault` takes it) -> inject()'s arguments."""
    parts = str(text).split(":")
    try:
        if len(parts) not in (3, 4):
            raise ValueError("expected KIND:ON:N[,N...][:RETRY_AFTER]")
        kind, on = parts[0], parts[1]
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULTS)})")
        if on not in ("api", "media"):
            raise ValueError(f"ON must be api or media, not {on!r}")
        at = [int(n) for n in parts[2].split(",")]
        retry_after = int(parts[3]) if len(parts) == 4 else 1
        if any(n < 1 for n in at) or retry_after < 0:
            raise ValueError("request numbers start at 1; RETRY_AFTER is >= 0")
    except ValueError as exc:
        raise PddError(f"--fault {str(text)[:60]!r}: {exc}") from None
    return kind, on, at, retry_after


def make_server(spec: str, host: str = "127.0.0.1", port: int = 8080, latency: float = 0.0, transform_limit: int = 50,
                faults: list[str] = ()) -> "MirrorServer":
    parsed = [parse_fault(f) for f in faults]  # every --fault checked before anything starts
    server = MirrorServer(Catalogue.load(spec), host=host, port=port, latency=latency, transform_limit=transform_limit)
    for kind, on, at, retry_after in parsed:
        server.inject(kind, on=on, at=at, retry_after=retry_after)
    return server


def serve(spec: str, host: str = "127.0.0.1", port: int = 8080, latency: float = 0.0, transform_limit: int = 50,
          faults: list[str] = ()) -> None:
    server = make_server(spec, host=host, port=port, latency=latency, transform_limit=transform_limit, faults=faults)
    if server.faults:
        print("faults: " + ", ".join(f"{on} #{n} {f.kind}" for (on, n), f in sorted(server.faults.items())), flush=True)
    print(f"serving {spec} ({len(server.catalogue.files)} files, {len(server.catalogue.categories)} categories) at "
          f"{server.api_url}  (Ctrl-C to stop)", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
