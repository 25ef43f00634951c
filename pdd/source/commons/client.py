"""Wikimedia Commons -> the snapshot store: a polite, resumable, fail-closed scraper.

Requests (all serial): each category with one listing of its subcategories and files together,
``generator=categorymembers&gcmtype=subcat|file&gcmlimit=500&prop=imageinfo`` (url, size, sha1, mime,
mediatype, extmetadata, thumbnail at ``--thumb-width``); the API gives imageinfo for at most 50 files
per response and continues with ``iicontinue``, so each response serves up to 50 files. ``continue`` is
followed exactly, every response's continuation is kept for resuming. Structured Data on Commons with
``wbgetentities``, 50 ids per call: files wait, across responses and categories, until 50 of them can
share a call (SDC is read only for files extmetadata would accept). Then only the thumbnail URL the
API gave is downloaded, only from allowed hosts. Every API call carries ``maxlag=5``; 429/503, the
maxlag/ratelimited errors (HTTP 200), timeouts, resets, truncated or malformed bodies are retried
after ``Retry-After`` or a capped exponential backoff, at most ``max_retries`` times, then a PddError
that leaves the resume state intact.
"""
from __future__ import annotations

import email.utils
import hashlib
import json
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

import requests

from pdd.core.version import PROJECT_URL, __version__
from pdd.core.errors import PddError
from pdd.core.hashing import hash_json
from pdd.core.images import BadImage, inspect
from pdd.rights.commons import decide, em_value, media_problem, strip_html
from pdd.source.commons.state import ScrapeState
from pdd.source.store import FileRecord, Label, Store

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
DEFAULT_CATEGORY = "Category:PD-Art (PD-old-100)"
SOURCE_ID = "commons"
BATCH = 50          # titles or ids per imageinfo / wbgetentities call (the API's limit for users)
LIST_LIMIT = 500    # gcmlimit: the most a user (not a bot) may list per request; imageinfo still comes 50 at a time
IIPROP = "url|size|sha1|mime|mediatype|extmetadata"
RETRY_API_CODES = {"maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError"}
FAKE_DOMAINS = {"example.com", "example.org", "example.net", "test.com", "domain.com", "email.invalid", "foo.com", "bar.com",
                "localhost", "mailinator.com"}
FAKE_TLDS = {"example", "invalid", "test", "localhost", "local"}
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)$")


def validate_email(address: str | None) -> str:
    """The contact address the User-Agent policy asks for; obviously fake ones are refused."""
    address = (address or "").strip()
    m = _EMAIL.match(address)
    if not m:
        raise PddError(f"--email {address!r} is not an email address; Wikimedia's User-Agent policy needs a real contact address")
    domain = m.group(1).lower()
    if domain in FAKE_DOMAINS or domain.rsplit(".", 1)[-1] in FAKE_TLDS or any(domain.endswith("." + d) for d in FAKE_DOMAINS):
        raise PddError(f"--email {address!r} is a placeholder address ({domain}); give one where Wikimedia operators can reach you")
    return address


def user_agent(email: str) -> str:
    return f"pdd/{__version__} ({PROJECT_URL}; {email}) python-requests/{requests.__version__}"


class _Retry(Exception):
    def __init__(self, problem: str, wait: float | None = None):
        super().__init__(problem)
        self.problem, self.wait = problem, wait


class MediaRejected(Exception):
    """The bytes at a thumbnail URL never matched what the API said (after all retries)."""


@dataclass
class ClientStats:
    api_requests: int = 0
    media_requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    bytes: int = 0


def parse_retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, when.timestamp() - time.time()))


def media_url_problem(url, hosts: set[str]) -> str | None:
    """Why URL may not be fetched from HOSTS, or None. The host is checked as `requests` will connect
    to it (its prepared URL, parsed by urllib3), and must agree with urllib's reading: URLs where the
    two differ (`http://localhost:P\\@127.0.0.1:P/x.jpg`: urlsplit reads 127.0.0.1, requests connects
    to localhost) are refused, and so are backslashes, userinfo, whitespace and control characters."""
    if not isinstance(url, str) or not url:
        return "not a URL"
    if "\\" in url:
        return "backslash in URL"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "whitespace or control character in URL"
    try:
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("http", "https"):
            return f"scheme {split.scheme!r} is not http(s)"
        if "@" in split.netloc:
            return "userinfo (user@) in URL"
        import urllib3.util

        connect = urllib3.util.parse_url(requests.Request("GET", url).prepare().url)
    except Exception as exc:  # noqa: BLE001 - any parse failure refuses
        return f"unparsable URL ({type(exc).__name__})"
    if connect.auth:
        return "userinfo (user@) in URL"
    ours, theirs = (split.hostname or "").lower(), (connect.host or "").lower().strip("[]")
    if ours != theirs:
        return f"ambiguous host ({ours!r} or {theirs!r})"
    if theirs not in hosts:
        return f"host {theirs!r} is not configured"
    return None


class CommonsClient:
    """One requests.Session, serial calls, retries with Retry-After or capped exponential backoff."""

    def __init__(self, api: str, email: str, *, timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 2.0,
                 backoff_cap: float = 120.0, retry_after_cap: float = 900.0, maxlag: int = 5,
                 media_hosts: list[str] | None = None, max_download: int = 50 * 1024 * 1024,
                 sleep: Callable[[float], None] = time.sleep, total_timeout: float | None = None,
                 max_api_bytes: int = 64 * 1024 * 1024, notify: Callable[[str], None] | None = None):
        split = urllib.parse.urlsplit(api)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise PddError(f"--api {api!r} is not an http(s) URL of api.php")
        self.api_url, self.email = api, validate_email(email)
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_base, self.backoff_cap, self.retry_after_cap = backoff_base, backoff_cap, retry_after_cap
        self.maxlag, self.max_download, self.sleep = maxlag, max_download, sleep
        # --timeout is per read; a server that drips one byte per read never trips it: each request also
        # has a total deadline, and an API body (after gzip) has a size cap
        self.total_timeout = total_timeout if total_timeout is not None else max(5 * timeout, 30.0)
        self.max_api_bytes = max_api_bytes
        self.notify = notify or (lambda line: print(f"pdd: {line}", file=sys.stderr, flush=True))
        hosts = {split.hostname.lower()}
        if split.hostname.lower().endswith("wikimedia.org"):
            hosts.add("upload.wikimedia.org")
        self.media_hosts = hosts | {h.lower() for h in media_hosts or []}
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": user_agent(self.email), "Accept-Encoding": "gzip, deflate"})
        self.stats = ClientStats()

    def close(self) -> None:
        self.session.close()

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * (2 ** attempt))

    def _with_retries(self, what: str, once: Callable[[], object]):
        for attempt in range(self.max_retries + 1):
            try:
                return once()
            except _Retry as exc:
                problem, wait = exc.problem, exc.wait
            except requests.Timeout:
                problem, wait = "timed out", None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                problem, wait = f"connection failed ({type(exc).__name__})", None
            if attempt == self.max_retries:
                raise PddError(f"{what}: gave up after {self.max_retries} retries (last: {problem}); everything stored so far "
                               "is kept, run the same command again to resume")
            wait = self._backoff(attempt) if wait is None else wait
            self.stats.retries += 1
            self.stats.waited_s += wait
            if wait >= 5:
                self.notify(f"{what}: {problem}; waiting {wait:.0f} s before retry {attempt + 1} of {self.max_retries}")
            self.sleep(wait)

    def api(self, params: dict) -> dict:
        """One API call (format=json, maxlag) with retries; returns the parsed body."""
        query = {"format": "json", **params, "maxlag": str(self.maxlag)}
        what = f"{self.api_url} ({params.get('action')} {params.get('list') or params.get('generator') or params.get('prop') or ''})"

        def once() -> dict:
            self.stats.api_requests += 1
            try:
                r = self.session.get(self.api_url, params=query, timeout=self.timeout, stream=True)
            except requests.TooManyRedirects:
                raise PddError(f"{what}: the API redirects in a loop (more than {self.session.max_redirects} redirects)") from None
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as exc:
                raise PddError(f"{what}: {type(exc).__name__}: {str(exc)[:160]}") from None
            with r:
                body = self._read_body(r, what)
            self.stats.bytes += len(body)
            retry_after = parse_retry_after(r.headers.get("Retry-After"), self.retry_after_cap)
            if r.status_code in (429, 503) or r.status_code >= 500:
                raise _Retry(f"HTTP {r.status_code}", retry_after)
            if r.status_code == 403 and b"User-Agent" in body:
                raise PddError(f"{self.api_url} refused our User-Agent ({user_agent(self.email)}): {body[:200].decode('utf-8', 'replace').strip()}")
            if r.status_code != 200:
                raise PddError(f"{what}: HTTP {r.status_code} {body[:200].decode('utf-8', 'replace').strip()}")
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # (RecursionError: JSON nested deeper than Python's stack)
                raise _Retry("malformed JSON") from None
            if not isinstance(data, dict):
                raise _Retry("malformed JSON (not an object)")
            err = data.get("error")
            if err:
                code = err.get("code", "?") if isinstance(err, dict) else "?"
                if code in RETRY_API_CODES:
                    raise _Retry(f"API error {code}", retry_after)
                raise PddError(f"{what}: API error {code}: {err.get('info', '') if isinstance(err, dict) else err}")
            return data

        return self._with_retries(what, once)

    def _read_body(self, r, what: str, cap: int | None = None, too_big: Callable[[], Exception] | None = None) -> bytes:
        """The whole (decompressed) body, within the total deadline and the size cap (CAP, default the
        API cap; TOO_BIG makes the exception raised above it)."""
        cap = self.max_api_bytes if cap is None else cap
        import urllib3.exceptions

        deadline = time.monotonic() + self.total_timeout
        chunks, total = [], 0
        while True:
            try:
                # read1: one socket read per call (iter_content blocks until a whole chunk has arrived, so a
                # server dripping one byte per read would never be checked against the deadline)
                chunk = r.raw.read1(1 << 16, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise _Retry("timed out") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _Retry(f"connection failed ({type(exc).__name__})") from None
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > cap:
                raise too_big() if too_big else PddError(f"{what}: response larger than {cap} bytes (after decompression); refused")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise _Retry(f"response not complete after {self.total_timeout:.0f} s")

    def host_allowed(self, url: str) -> bool:
        return media_url_problem(url, self.media_hosts) is None

    def _get_media(self, url: str):
        """GET following redirects by hand: every hop must stay on the configured media hosts."""
        for _hop in range(5):
            r = self.session.get(url, timeout=self.timeout, stream=True, allow_redirects=False)
            if not r.is_redirect:
                return r
            nxt = urllib.parse.urljoin(url, r.headers.get("Location", ""))
            r.close()
            problem = media_url_problem(nxt, self.media_hosts)
            if problem:
                raise MediaRejected(f"redirect to {nxt[:120]!r} leaves the configured hosts {sorted(self.media_hosts)} ({problem})")
            url = nxt
        raise MediaRejected(f"too many redirects for {url[:120]!r}")

    def media(self, url: str, verify: Callable[[bytes], str | None] | None = None) -> bytes:
        """Download one URL exactly as the API gave it; ``verify`` returns a problem to retry on."""
        problem = media_url_problem(url, self.media_hosts)
        if problem:
            raise MediaRejected(f"media host of {url[:120]!r} is not one of the configured hosts {sorted(self.media_hosts)} ({problem})")
        problems: list[str] = []

        def once() -> bytes:
            self.stats.media_requests += 1
            with self._get_media(url) as r:
                if r.status_code in (429, 503) or r.status_code >= 500:
                    raise _Retry(f"HTTP {r.status_code}", parse_retry_after(r.headers.get("Retry-After"), self.retry_after_cap))
                if r.status_code != 200:
                    raise MediaRejected(f"thumbnail not available (HTTP {r.status_code})")
                data = self._read_body(r, f"download {url[:120]}", self.max_download,
                                       lambda: MediaRejected(f"thumbnail larger than {self.max_download} bytes"))
            self.stats.bytes += len(data)
            problem = verify(data) if verify else None
            if problem:
                problems.append(problem)
                if len(problems) > self.max_retries:
                    raise MediaRejected(problem)
                raise _Retry(problem)
            return data

        return self._with_retries(f"download {url[:120]}", once)


# ---------------------------------------------------------------------------------------------
# one file -> one FileRecord
# ---------------------------------------------------------------------------------------------
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
    base = dict(source_id=SOURCE_ID, external_id=str(pid), title=title)
    if page.get("imageinfo_malformed"):
        return FileRecord(**base, status="rejected", reason=f"rejected: malformed imageinfo in the API response ({page['imageinfo_malformed']})",
                          provenance={"api": client.api_url, "pageid": pid, "title": title})
    if not info:
        return FileRecord(**base, status="rejected", reason="rejected: no imageinfo in the API response (missing or deleted file)",
                          provenance={"api": client.api_url, "pageid": pid, "title": title})
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


# ---------------------------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------------------------
@dataclass
class ScrapeConfig:
    api: str = DEFAULT_API
    categories: list[str] = field(default_factory=lambda: [DEFAULT_CATEGORY])
    depth: int = 3
    limit: int | None = None
    thumb_width: int = 512
    sdc: bool = True

    def key(self) -> dict:
        return {"api": self.api, "categories": list(self.categories), "depth": self.depth, "thumb_width": self.thumb_width, "sdc": self.sdc}


@dataclass
class ScrapeReport:
    run_id: int = 0
    resumed: bool = False
    finished: bool = False
    seen: int = 0
    accepted: int = 0
    rejected: int = 0
    unchanged: int = 0
    duplicates: int = 0
    new_revisions: int = 0
    categories: int = 0
    batches: int = 0
    reasons: dict = field(default_factory=dict)
    empty_roots: list = field(default_factory=list)   # root categories with neither files nor subcategories


def normalise_category(title: str) -> str:
    title = " ".join(title.replace("_", " ").split())
    if not title.lower().startswith("category:"):
        title = "Category:" + title
    return "Category:" + title.split(":", 1)[1]


@dataclass
class _Unit:
    """The new files of one API response, waiting (in order) for their SDC and their turn; the category's
    continuation after that response is committed in the transaction that stores the unit's last file."""
    cat: object                # CategoryState
    items: list                # [page, info, wants_sdc]
    cont: dict | None          # the category's continue set after this response (None: the category is done)
    done: int = 0              # items handled so far


class Scraper:
    """Walks the category tree breadth-first. Each category is read with one generator listing
    (``gcmtype=subcat|file``, ``gcmlimit=500``, ``prop=imageinfo``), which names its subcategories and
    gives imageinfo for up to 50 of its files per response (the API's thumbnail limit; ``iicontinue``
    for the rest). The files that extmetadata would accept wait, across responses and categories, until
    50 of them can share one ``wbgetentities`` call; then they are decided and stored in order, and each
    response's continuation is committed together with its last file (so a kill resumes exactly)."""

    def __init__(self, store: Store, client: CommonsClient, cfg: ScrapeConfig, progress: Callable[[ScrapeReport], None] | None = None):
        self.store, self.client, self.cfg = store, client, cfg
        self.cfg.categories = [normalise_category(c) for c in cfg.categories]
        self.progress = progress or (lambda r: None)
        self.report = ScrapeReport()
        self.pending: list[_Unit] = []         # FIFO of responses whose files are not all stored yet
        self.taken: set[int] = set()           # pageids queued in this process (a file in several categories: once)
        self.sdc: dict[int, dict | None] = {}  # pageid -> its MediaInfo entity (None: none given), fetched, not yet used
        self.stopped = False                   # --limit reached

    def file_params(self, cat) -> dict:
        return {"action": "query", "formatversion": "2", "generator": "categorymembers", "gcmtitle": cat.title,
                "gcmtype": "subcat|file" if cat.depth < self.cfg.depth else "file", "gcmlimit": str(LIST_LIMIT),
                "prop": "imageinfo", "iiprop": IIPROP, "iiurlwidth": str(self.cfg.thumb_width), "iiextmetadatalanguage": "en"}

    def fetch_sdc(self, pageids: list[int]) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for i in range(0, len(pageids), BATCH):
            ids = [f"M{p}" for p in pageids[i:i + BATCH]]
            data = self.client.api({"action": "wbgetentities", "ids": "|".join(ids)})
            entities = data.get("entities") or {}
            if not isinstance(entities, dict):
                raise PddError(f"{self.client.api_url} (wbgetentities): malformed API response ('entities' is a {type(entities).__name__})")
            for mid, ent in entities.items():
                if mid[1:].isdigit() and isinstance(ent, dict):
                    out[int(mid[1:])] = ent
        return out

    # ---- reading one category --------------------------------------------------------------
    def _pages(self, data: dict, what: str) -> tuple[list[str], list[dict]]:
        """(subcategory titles, file pages) of one response; pages with a malformed pageid are said and left out."""
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
                self.client.notify(f"{what}: page with malformed pageid {str(p['pageid'])[:40]!r} skipped")
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

    def _item(self, page: dict) -> list:
        info = (page.get("imageinfo") or [None])[0]
        wants = bool(self.cfg.sdc and info and not media_problem(info) and decide(info.get("extmetadata")).accepted)
        return [page, info, wants]

    def read_category(self, state: ScrapeState, cat) -> int:
        """Every response of CAT's listing, queued; returns how many members it had (files and subcategories)."""
        what = f"{self.client.api_url} ({cat.title})"
        params = self.file_params(cat)
        seen_conts: set[str] = set()   # continuations of this category (A, B, A, B never ends)
        in_batch: set[int] = set()     # files given imageinfo in this generator batch
        found, c = 0, dict(cat.files_cont or {})
        while True:
            data = self.client.api({**params, **c})
            subcats, files = self._pages(data, what)
            nxt = continue_of(data, what)
            if nxt:
                key = hash_json(nxt)
                if key in seen_conts:
                    raise PddError(f"{self.client.api_url}: the API repeated a continuation of {cat.title} "
                                   f"({str(nxt)[:120]}) after {len(seen_conts)} responses; stopping (what is stored is kept)")
                seen_conts.add(key)
            if subcats and cat.depth < self.cfg.depth:
                state.queue_subcats(cat, subcats)
            complete = "batchcomplete" in data or not nxt
            items = []
            for page in files:
                pid = page["pageid"]
                given = "imageinfo" in page or "imageinfo_malformed" in page
                if pid in in_batch or not (given or complete):
                    continue  # (listed again in a later response of the batch, or its imageinfo is still to come)
                in_batch.add(pid)
                if pid in self.taken or state.file_done(pid):
                    self.report.duplicates += 1
                    continue
                self.taken.add(pid)
                items.append(self._item(page))  # at the batch's end, a file never given imageinfo is rejected for it
            if complete:
                found += len(subcats) + len(in_batch)
                in_batch = set()
                self.report.batches += 1
            self.pending.append(_Unit(cat, items, nxt or None))
            self.drain(state)
            if self.stopped or not nxt:
                return found
            c = dict(nxt)  # replace the whole continue set

    # ---- deciding and storing, in order ------------------------------------------------------
    def drain(self, state: ScrapeState, final: bool = False) -> None:
        """Store every queued file whose SDC is known; fetch SDC when 50 files wait for it (or at the end,
        or when fewer than 50 would reach --limit)."""
        while True:
            self.store_ready(state)
            if self.stopped or not self.pending:
                return
            wanted = [it[0]["pageid"] for u in self.pending for it in u.items[u.done:] if it[2] and it[0]["pageid"] not in self.sdc]
            need = BATCH if self.cfg.limit is None else max(1, min(BATCH, self.cfg.limit - self.report.accepted))
            if not wanted or not (final or len(wanted) >= need):
                return
            got = self.fetch_sdc(wanted[:BATCH])
            self.sdc.update({pid: got.get(pid) for pid in wanted[:BATCH]})

    def store_ready(self, state: ScrapeState) -> None:
        """Decide, download and store the queued files up to the first still waiting for SDC; commit them,
        their per-file status and the continuation of every response now complete, in one transaction."""
        ready = []
        for u in self.pending:
            for it in u.items[u.done:]:
                if it[2] and it[0]["pageid"] not in self.sdc:
                    break
                ready.append(it)
            else:
                continue
            break
        if not ready and not (self.pending and self.pending[0].done == len(self.pending[0].items)):
            return
        before = state.previous_meta([it[0]["pageid"] for it in ready])
        recs, unchanged, n = [], [], 0
        accepted = self.report.accepted
        for page, info, wants in ready:
            pid = page["pageid"]
            ent = self.sdc.pop(pid, None) if wants else None
            n += 1
            mh = meta_hash(info, ent, self.cfg.thumb_width)
            if pid in before and before[pid][0] == mh:
                unchanged.append((pid, page.get("title"), "unchanged", "unchanged since the last scrape", None, mh))
                continue
            rec = build_record(self.client, page, info, ent)
            recs.append((rec, mh))
            accepted += rec.status == "accepted"
            if self.cfg.limit is not None and accepted >= self.cfg.limit:
                self.stopped = True
                break
        # how many of each queued response's files this call handles; the responses whose last file is
        # among them (a prefix of the queue) have their continuations committed in the same transaction
        takes, left = [], n
        for u in self.pending:
            take = min(left, len(u.items) - u.done)
            left -= take
            takes.append((u, take))
            if u.done + take < len(u.items):
                break
        complete = [u for u, take in takes if u.done + take == len(u.items)]
        rows: list[tuple] = []

        def after(con, results):
            for (rec, mh), (revision_id, _created) in zip(recs, results):
                rows.append((int(rec.external_id), rec.title, rec.status, rec.reason, revision_id, mh))
            state.write_files(con, rows + unchanged)
            for u in complete:
                state.commit_batch(u.cat, u.cont, con)

        results = self.store.record_batch([r for r, _ in recs], after)
        state.files_committed(rows + unchanged)
        for u, take in takes:
            u.done += take
        del self.pending[:len(complete)]
        for (rec, _mh), (_rid, created) in zip(recs, results):
            self.report.seen += 1
            self.report.new_revisions += int(created)
            if rec.status == "accepted":
                self.report.accepted += 1
            else:
                self.report.rejected += 1
                self.report.reasons[rec.reason] = self.report.reasons.get(rec.reason, 0) + 1
        self.report.seen += len(unchanged)
        self.report.unchanged += len(unchanged)
        self.progress(self.report)

    def run(self) -> ScrapeReport:
        self.store.ensure_source(SOURCE_ID, "commons", self.cfg.api)
        state = ScrapeState(self.store, self.cfg.key())
        self.report.run_id, self.report.resumed = state.run_id, state.resumed
        listed: set[str] = set()  # categories read to their end in this process (their last files may still wait)
        while (cat := state.next_category(skip=listed)) is not None:
            # a root category read from its start that has neither files nor subcategories is most likely
            # misspelt (the API answers a missing category with an empty list): said, not silently 0 files
            fresh = cat.depth == 0 and cat.batches == 0 and cat.files_cont is None
            found = self.read_category(state, cat)
            if self.stopped:
                return self.report  # --limit: what was not stored is re-read next time; stored files are skipped
            listed.add(cat.title)
            if fresh and not found:
                self.client.notify(f"warning: {cat.title} has no files and no subcategories at {self.client.api_url}: "
                                   "check its spelling (does the category exist?)")
                self.report.empty_roots.append(cat.title)
            self.report.categories += 1
        self.drain(state, final=True)
        if self.stopped:
            return self.report
        state.finish()
        self.report.finished = True
        return self.report


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
        ent = entities.get(f"M{pageid}") if isinstance(entities, dict) else None
        ent = ent if isinstance(ent, dict) else None
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


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """A tqdm bar (as the training stages have): files seen, with accepted / rejected / unchanged / bytes /
    API requests beside it, on stderr, only on a terminal."""

    def __init__(self, client: CommonsClient, stream=sys.stderr):
        from tqdm.auto import tqdm

        self.client, self.stream = client, stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(total=None, desc="scrape", unit="file", dynamic_ncols=True, mininterval=0.5, disable=not self.enabled,
                        file=stream)

    def __call__(self, r: ScrapeReport) -> None:
        if not self.enabled:
            return
        self.bar.set_postfix_str(f"accepted {r.accepted} | rejected {r.rejected} | unchanged {r.unchanged} | "
                                 f"{human_bytes(self.client.stats.bytes)} | {self.client.stats.api_requests} API requests",
                                 refresh=False)
        self.bar.update(r.seen - self.bar.n)

    def done(self) -> None:
        self.bar.close()
