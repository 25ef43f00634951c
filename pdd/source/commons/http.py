"""HTTP to a MediaWiki API and its media hosts, with Wikimedia's etiquette: the scraper's client.

One ``requests.Session``, calls made one after another (never in parallel), a User-Agent naming the
project and a real contact address (obviously fake ones are refused), ``maxlag=5`` on every API call.
429/503, the maxlag/ratelimited errors (HTTP 200), timeouts, resets, truncated or malformed bodies are
retried after ``Retry-After`` or a capped exponential backoff, at most ``max_retries`` times, then a
PddError that leaves the resume state intact. Each request has a total deadline and a size cap.
Redirects are followed by hand (at most ``MAX_REDIRECTS`` hops), each hop checked before it is
fetched: an API call stays on the configured API's scheme, host and port (or its https upgrade), media
stay on the configured media hosts and never drop from https to http. A hop elsewhere is refused with
one line naming both hosts, and nothing from it is read.
"""
from __future__ import annotations

import email.utils
import json
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, NamedTuple

import requests
import urllib3.exceptions
import urllib3.util

from pdd.core.errors import PddError
from pdd.core.version import PROJECT_URL, __version__

DEFAULT_API = "https://commons.wikimedia.org/w/api.php"
RETRY_API_CODES = {"maxlag", "ratelimited", "readonly", "internal_api_error_DBQueryError"}
FAKE_DOMAINS = {"example.com", "example.org", "example.net", "test.com", "domain.com", "email.invalid", "foo.com", "bar.com",
                "localhost", "mailinator.com"}
FAKE_TLDS = {"example", "invalid", "test", "localhost", "local"}
MAX_REDIRECTS = 5   # hops followed per request (each one checked against the allowed hosts before it is fetched)
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


class Target(NamedTuple):
    """Where `requests` will connect for a URL: scheme, host (lower case) and port (the default filled in)."""
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"


def url_target(url) -> Target | str:
    """The Target of URL, or why it may not be fetched at all. The host is read as `requests` will
    connect to it (its prepared URL, parsed by urllib3), and must agree with urllib's reading: URLs where
    the two differ (`http://localhost:P\\@127.0.0.1:P/x.jpg`: urlsplit reads 127.0.0.1, requests connects
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
        connect = urllib3.util.parse_url(requests.Request("GET", url).prepare().url)
        port = split.port
    except Exception as exc:  # noqa: BLE001 - any parse failure refuses
        return f"unparsable URL ({type(exc).__name__})"
    if connect.auth:
        return "userinfo (user@) in URL"
    ours, theirs = (split.hostname or "").lower(), (connect.host or "").lower().strip("[]")
    if ours != theirs:
        return f"ambiguous host ({ours!r} or {theirs!r})"
    if (connect.port or None) != (port or None):
        return f"ambiguous port ({port!r} or {connect.port!r})"
    return Target(split.scheme.lower(), theirs, port or (443 if split.scheme.lower() == "https" else 80))


def media_url_problem(url, hosts: set[str]) -> str | None:
    """Why URL may not be fetched from HOSTS, or None (url_target's checks, then the host)."""
    target = url_target(url)
    if isinstance(target, str):
        return target
    if target.host not in hosts:
        return f"host {target.host!r} is not configured"
    return None


def api_hop_problem(url, api: Target) -> str | None:
    """Why a redirect of an API call to URL may not be followed, or None: the hop must stay on the
    configured API's scheme, host and port, or be its https upgrade (same host, port 443)."""
    target = url_target(url)
    if isinstance(target, str):
        return target
    if target != api and target != Target("https", api.host, 443):
        return f"{target.scheme}://{target.netloc} is not the configured API host {api.scheme}://{api.netloc}"
    return None


def media_hop_problem(url, previous: str, hosts: set[str]) -> str | None:
    """Why a media redirect from PREVIOUS to URL may not be followed, or None: a configured host, and
    never from https down to http."""
    problem = media_url_problem(url, hosts)
    if problem is None and previous.lower().startswith("https:") and not url.lower().startswith("https:"):
        problem = "a redirect from https down to http"
    return problem


class CommonsClient:
    """One requests.Session, serial calls, retries with Retry-After or capped exponential backoff."""

    def __init__(self, api: str, email: str, *, timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 2.0,
                 backoff_cap: float = 120.0, retry_after_cap: float = 900.0, maxlag: int = 5,
                 media_hosts: list[str] | None = None, max_download: int = 50 * 1024 * 1024,
                 sleep: Callable[[float], None] = time.sleep, total_timeout: float | None = None,
                 max_api_bytes: int = 64 * 1024 * 1024, notify: Callable[[str], None] | None = None):
        split = urllib.parse.urlsplit(api)
        target = url_target(api)
        if split.scheme not in ("http", "https") or not split.hostname or isinstance(target, str):
            raise PddError(f"--api {api!r} is not an http(s) URL of api.php")
        self.api_target = target
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
                r = self._get(self.api_url, query, lambda url, _previous: api_hop_problem(url, self.api_target),
                              lambda url, problem: PddError(f"{what}: redirect to {url[:120]!r} refused: {problem}; "
                                                            "nothing from it is recorded"),
                              lambda: PddError(f"{what}: the API redirects in a loop (more than {MAX_REDIRECTS} redirects)"))
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

    def _get(self, url: str, params: dict | None, hop_problem: Callable[[str, str], str | None],
             refused: Callable[[str, str], Exception], loop: Callable[[], Exception]):
        """GET following redirects by hand (at most MAX_REDIRECTS hops): HOP_PROBLEM(next URL, previous
        URL) is asked before each hop is fetched, and a problem raises REFUSED(next URL, problem)."""
        for _hop in range(MAX_REDIRECTS + 1):
            r = self.session.get(url, params=params, timeout=self.timeout, stream=True, allow_redirects=False)
            if not r.is_redirect:
                return r
            nxt = urllib.parse.urljoin(r.url, r.headers.get("Location", ""))
            r.close()
            problem = hop_problem(nxt, r.url)
            if problem:
                raise refused(nxt, problem)
            url, params = nxt, None
        raise loop()

    def _get_media(self, url: str):
        """GET following redirects by hand: every hop must stay on the configured media hosts."""
        return self._get(url, None, lambda nxt, previous: media_hop_problem(nxt, previous, self.media_hosts),
                         lambda nxt, problem: MediaRejected(f"redirect to {nxt[:120]!r} leaves the configured hosts "
                                                            f"{sorted(self.media_hosts)} ({problem})"),
                         lambda: MediaRejected(f"too many redirects for {url[:120]!r}"))

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


def client_from_args(args) -> CommonsClient:
    """The client that the network options of `pdd scrape` and `pdd label` ask for (--email checked first)."""
    validate_email(args.email)
    return CommonsClient(args.api, args.email, timeout=args.timeout, max_retries=args.max_retries, backoff_base=args.backoff,
                         backoff_cap=args.backoff_cap, retry_after_cap=args.backoff_cap, media_hosts=args.media_host)
