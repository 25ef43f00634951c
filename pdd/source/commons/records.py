"""API responses -> FileRecords: the shape checks, the licence decision and its evidence, the thumbnail.

A file is decided from its imageinfo (extmetadata) and, when read, its Structured Data on Commons
(``pdd.rights.commons.decide``); only an accepted file's thumbnail is downloaded (the URL the API gave,
checked by the client), and the bytes must be a usable image of the size the API said (and, for an
unscaled original, its sha1). Wrongly typed fields in a response are one-line errors or rejected
files, never tracebacks: a Structured Data entity with a value of the wrong type where one is read
(sdc_problem) rejects its file, and the scrape goes on.
"""
from __future__ import annotations

import hashlib
import re
from typing import Callable

from pdd.core.errors import PddError
from pdd.core.hashing import hash_json
from pdd.core.ids import check_id
from pdd.core.images import BadImage, inspect
from pdd.rights.commons import SCOPE_QUALIFIERS, decide, em_value, media_problem, strip_html
from pdd.source.commons.http import CommonsClient, MediaRejected
from pdd.source.store import FileRecord, Label, Store

SOURCE_ID = "commons"
IIPROP = "url|size|sha1|mime|mediatype|extmetadata"


# ---- the shape of API responses: wrongly typed fields are one-line errors or rejected files, never tracebacks
MAX_PAGEID = 2 ** 53


def query_of(data: dict, what: str) -> dict:
    """data['query'] (an object, or {} when absent)."""
    q = data.get("query")
    if q is None:
        return {}
    if not isinstance(q, dict):
        raise PddError(f"{what}: malformed API response ('query' is a {type(q).__name__}, not an object)")
    return q


def continue_of(data: dict, what: str) -> dict | None:
    """data['continue'] as a {str: str|int} set, or None when there is none."""
    nxt = data.get("continue")
    if not nxt:
        return None
    if not isinstance(nxt, dict) or not all(isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)
                                            for k, v in nxt.items()):
        raise PddError(f"{what}: malformed API response ('continue' is {str(nxt)[:80]!r}, not a set of parameters)")
    return nxt


def valid_pageid(value) -> int | None:
    return value if type(value) is int and 0 < value < MAX_PAGEID else None


def listing_pages(data: dict, what: str, notify: Callable[[str], None]) -> tuple[list[str], list[dict]]:
    """(subcategory titles, file pages) of one response of a category listing; pages with a malformed
    pageid are said (NOTIFY) and left out."""
    raw = query_of(data, what).get("pages") or []
    if not isinstance(raw, (dict, list)):
        raise PddError(f"{what}: malformed API response ('pages' is a {type(raw).__name__})")
    subcats, files = [], []
    for p in raw.values() if isinstance(raw, dict) else raw:
        if not isinstance(p, dict) or "pageid" not in p:
            continue
        title = p.get("title") if isinstance(p.get("title"), str) else None
        if p.get("ns") == 14:
            if title:
                subcats.append(title)
            continue
        pid = valid_pageid(p["pageid"])
        if pid is None:  # no id to store it under: said, and left out
            notify(f"{what}: page with malformed pageid {str(p['pageid'])[:40]!r} skipped")
            continue
        page = {"pageid": pid, "title": title}
        ii = p.get("imageinfo")
        if ii:
            if isinstance(ii, list) and isinstance(ii[0], dict):
                page["imageinfo"] = ii
            else:
                page["imageinfo_malformed"] = f"imageinfo is {str(ii)[:40]!r}"
        files.append(page)
    return subcats, files


SDC_PROPS = ("P275", "P6216")  # the statements decide() reads: licence, copyright status


def _kind(value) -> str:
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _snak_problem(snak, where: str) -> str | None:
    if not isinstance(snak, dict):
        return f"{where} is {_kind(snak)}"
    if not isinstance(snak.get("snaktype", ""), str):
        return f"{where}.snaktype is {_kind(snak['snaktype'])}"
    datavalue = snak.get("datavalue", {})
    if not isinstance(datavalue, dict):
        return f"{where}.datavalue is {_kind(datavalue)}"
    value = datavalue.get("value")
    if isinstance(value, dict) and not isinstance(value.get("id", ""), str):
        return f"{where}.datavalue.value.id is {_kind(value['id'])}"
    return None


def sdc_problem(entity) -> str | None:
    """Which value of a MediaInfo entity (wbgetentities) has the wrong type where the licence decision
    or the captions read it, or None (also for no entity, or a missing one)."""
    if entity is None:
        return None
    if not isinstance(entity, dict):
        return f"the entity is {_kind(entity)}"
    if "missing" in entity:
        return None
    statements = entity.get("statements") or entity.get("claims") or {}
    if not isinstance(statements, dict):
        return f"statements is {_kind(statements)}"
    for prop in SDC_PROPS:
        listed = statements.get(prop, [])
        if not isinstance(listed, list):
            return f"statements.{prop} is {_kind(listed)}"
        for n, st in enumerate(listed):
            where = f"statements.{prop}[{n}]"
            if not isinstance(st, dict):
                return f"{where} is {_kind(st)}"
            if not isinstance(st.get("rank", ""), str):
                return f"{where}.rank is {_kind(st['rank'])}"
            problem = _snak_problem(st.get("mainsnak", {}), f"{where}.mainsnak")
            if problem:
                return problem
            quals = st.get("qualifiers") or {}
            if not isinstance(quals, dict):
                return f"{where}.qualifiers is {_kind(quals)}"
            for q in SCOPE_QUALIFIERS:
                snaks = quals.get(q) or []
                if not isinstance(snaks, list):
                    return f"{where}.qualifiers.{q} is {_kind(snaks)}"
                problem = next((p for i, snak in enumerate(snaks) if (p := _snak_problem(snak, f"{where}.qualifiers.{q}[{i}]"))), None)
                if problem:
                    return problem
    labels = entity.get("labels") or {}
    if not isinstance(labels, dict):
        return f"labels is {_kind(labels)}"
    for lang, label in labels.items():
        if not isinstance(label, dict) or not isinstance(label.get("value", ""), str):
            return f"labels.{str(lang)[:20]} is {str(label)[:40]!r}"
    return None


def labels_for(info: dict, sdc: dict | None) -> list[Label]:
    em = info.get("extmetadata") or {}
    em = em if isinstance(em, dict) else {}
    out = []
    if sdc and "missing" not in sdc:
        labels = sdc.get("labels") or {}
        for lang, lab in sorted(labels.items() if isinstance(labels, dict) else []):
            text = lab.get("value") if isinstance(lab, dict) else None
            if text and text.strip():
                out.append(Label("caption", text.strip(), "cc0", lang, "commons-sdc"))
    desc = em.get("ImageDescription")
    if isinstance(desc, dict) and strip_html(desc.get("value", "")):
        m = re.search(r'lang="([A-Za-z-]+)"', str(desc.get("value")))
        out.append(Label("description", strip_html(desc["value"]), "cc-by-sa", m.group(1) if m else None, "commons-extmetadata"))
    name = em.get("ObjectName")
    if isinstance(name, dict) and strip_html(name.get("value", "")):
        out.append(Label("title", strip_html(name["value"]), "cc-by-sa", None, f"commons-extmetadata:{name.get('source')}"))
    return out


def provenance_for(api: str, page: dict, info: dict, sdc: dict | None) -> dict:
    em = info.get("extmetadata") or {}
    em = em if isinstance(em, dict) else {}
    return {
        "api": api,
        "pageid": page["pageid"],
        "title": page.get("title"),
        "mid": f"M{page['pageid']}",
        "descriptionurl": info.get("descriptionurl"),
        "descriptionshorturl": info.get("descriptionshorturl"),
        "artist": em_value(em, "Artist"),
        "credit": em_value(em, "Credit"),
        "date": em_value(em, "DateTimeOriginal"),
        "uploaded": em_value(em, "DateTime"),
        "categories": [c for c in (em_value(em, "Categories") or "").split("|") if c],
        "sha1": info.get("sha1"),
        "original_url": info.get("url"),
        "original_size": info.get("size"),
        "original_width": info.get("width"),
        "original_height": info.get("height"),
        "original_mime": info.get("mime"),
        "mediatype": info.get("mediatype"),
        "thumb_url": info.get("thumburl"),
        "thumb_width": info.get("thumbwidth"),
        "thumb_height": info.get("thumbheight"),
        "sdc_lastrevid": sdc.get("lastrevid") if isinstance(sdc, dict) else None,
    }


def meta_hash(info: dict | None, sdc: dict | None, thumb_width: int) -> str:
    return hash_json({"imageinfo": info, "sdc": sdc, "thumb_width": thumb_width})


def build_record(client: CommonsClient, page: dict, info: dict | None, sdc: dict | None,
                 existing: Callable[[str], bytes | None] | None = None) -> FileRecord:
    """Decide one file and, when it is accepted, fetch its thumbnail (only then)."""
    pid, title = page["pageid"], page.get("title") or f"pageid {page['pageid']}"
    base = dict(source_id=SOURCE_ID, external_id=check_id(str(pid), f"{client.api_url}: pageid", "not a Commons page id"), title=title)
    if page.get("imageinfo_malformed"):
        return FileRecord(**base, status="rejected", reason=f"rejected: malformed imageinfo in the API response ({page['imageinfo_malformed']})",
                          provenance={"api": client.api_url, "pageid": pid, "title": title})
    if not info:
        return FileRecord(**base, status="rejected", reason="rejected: no imageinfo in the API response (missing or deleted file)",
                          provenance={"api": client.api_url, "pageid": pid, "title": title})
    garbled = sdc_problem(sdc)
    if garbled:  # (fail closed: never decided without it, never a traceback)
        return FileRecord(**base, status="rejected", reason=f"rejected: garbled Structured Data in the API response ({garbled})",
                          mime=info.get("mime"), source_sha1=info.get("sha1"), provenance=provenance_for(client.api_url, page, info, sdc))
    decision = decide(info.get("extmetadata"), sdc)
    common = dict(licence=decision, source_sha1=info.get("sha1"), provenance=provenance_for(client.api_url, page, info, sdc),
                  labels=labels_for(info, sdc), source_url=info.get("thumburl"))
    problem = media_problem(info)
    if problem or not decision.accepted:
        return FileRecord(**base, status="rejected", reason=problem or decision.reason, mime=info.get("mime"), **common)
    thumb = info.get("thumburl")
    if not isinstance(thumb, str) or not thumb:
        return FileRecord(**base, status="rejected", reason="rejected: the API gave no thumbnail URL", **common)
    unscaled = thumb == info.get("url")
    sha1 = str(info.get("sha1") or "").lower()
    size = info.get("size")
    if size is not None and (type(size) is not int or size < 0):
        return FileRecord(**base, status="rejected", reason=f"rejected: malformed size {str(size)[:40]!r} in the API response", **common)
    if unscaled and (size or 0) > client.max_download:
        return FileRecord(**base, status="rejected", reason=f"rejected: original of {info.get('size')} bytes and no scaled thumbnail", **common)
    seen: dict = {}

    def verify(data: bytes) -> str | None:
        if unscaled and sha1 and hashlib.sha1(data).hexdigest() != sha1:
            return "downloaded bytes do not match the API's sha1"
        try:
            img = inspect(data)
        except BadImage as exc:
            return f"thumbnail is not a usable image ({exc})"
        tw, th = info.get("thumbwidth"), info.get("thumbheight")
        if tw and th and (img.width, img.height) != (tw, th):
            return f"thumbnail is {img.width}x{img.height}, the API said {tw}x{th}"
        seen["img"] = img
        return None

    data = existing(thumb) if existing else None
    if data is None or verify(data):
        try:
            data = client.media(thumb, verify)
        except MediaRejected as exc:
            return FileRecord(**base, status="rejected", reason=f"rejected: {exc}", **common)
    img = seen["img"]
    return FileRecord(**base, status="accepted", reason=decision.reason, data=data, mime=img.mime, width=img.width,
                      height=img.height, **common)


def refetch(store: Store, client: CommonsClient, pageid: int, thumb_width: int = 512, sdc: bool = True) -> tuple[int, bool, FileRecord]:
    """Re-read one file's metadata (and SDC) and store it: a new revision only when something changed."""
    data = client.api({"action": "query", "formatversion": "2", "pageids": str(pageid), "prop": "imageinfo", "iiprop": IIPROP,
                       "iiurlwidth": str(thumb_width), "iiextmetadatalanguage": "en"})
    pages = query_of(data, f"{client.api_url} (pageid {pageid})").get("pages") or []
    pages = pages.values() if isinstance(pages, dict) else pages if isinstance(pages, list) else []
    page = next((p for p in pages if isinstance(p, dict) and valid_pageid(p.get("pageid")) == pageid), None)
    if page is None or page.get("missing"):
        raise PddError(f"pageid {pageid} is missing from {client.api_url}")
    ent = None
    if sdc:
        entities = client.api({"action": "wbgetentities", "ids": f"M{pageid}"}).get("entities") or {}
        ent = entities.get(f"M{pageid}") if isinstance(entities, dict) else None  # (of the wrong type: build_record rejects)
    cur = store.latest_revision(f"{SOURCE_ID}:{pageid}")

    def existing(url: str) -> bytes | None:
        if cur and cur.get("sha256") and cur.get("source_url") == url:
            try:
                return store.read_blob(cur["sha256"])
            except PddError:
                return None
        return None

    ii = page.get("imageinfo")
    if ii and not (isinstance(ii, list) and isinstance(ii[0], dict)):
        page = {**page, "imageinfo_malformed": f"imageinfo is {str(ii)[:40]!r}"}
        ii = None
    rec = build_record(client, page, (ii or [None])[0], ent, existing)
    revision_id, created = store.record(rec)
    return revision_id, created, rec
