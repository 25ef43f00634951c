"""The category walk of `pdd scrape`: Wikimedia Commons -> the snapshot store, resumable and fail-closed.

Requests (all serial, through the client of pdd/source/commons/http.py): each category with one listing
of its subcategories and files together, ``generator=categorymembers&gcmtype=subcat|file&gcmlimit=500
&prop=imageinfo`` (url, size, sha1, mime, mediatype, extmetadata, thumbnail at ``--thumb-width``); the
API gives imageinfo for at most 50 files per response and continues with ``iicontinue``, so each
response serves up to 50 files. ``continue`` is followed exactly, every response's continuation is kept
for resuming (pdd/source/commons/state.py). Structured Data on Commons with ``wbgetentities``, 50 ids
per call: files wait, across responses and categories, until 50 of them can share a call (SDC is read
only for files extmetadata would accept). Then each file is decided and, when accepted, its thumbnail
downloaded (pdd/source/commons/records.py). Progress is the tqdm bar `pdd scrape` shows on a terminal.

Every listing is bounded (ScrapeConfig): requests in a row that name no file or subcategory new to the
listing, requests per category, and seconds per category, in this process. A bound hit stops the scrape
with one line naming the category, the bound and its option; every continuation committed so far is
kept, so the same command resumes where it stopped.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from tqdm.auto import tqdm

from pdd.core.errors import PddError
from pdd.core.hashing import hash_json
from pdd.rights.commons import decide, media_problem
from pdd.source.commons.bounds import ListingBounds
from pdd.source.commons.http import DEFAULT_API, CommonsClient
from pdd.source.commons.records import IIPROP, SOURCE_ID, build_record, continue_of, listing_pages, meta_hash
from pdd.source.commons.state import CategoryState, FileStatus, ScrapeState
from pdd.source.store import FileRecord, Store

DEFAULT_CATEGORY = "Category:PD-Art (PD-old-100)"
BATCH = 50          # titles or ids per imageinfo / wbgetentities call (the API's limit for users)
LIST_LIMIT = 500    # gcmlimit: the most a user (not a bot) may list per request; imageinfo still comes 50 at a time


@dataclass
class ScrapeConfig:
    api: str = DEFAULT_API
    categories: list[str] = field(default_factory=lambda: [DEFAULT_CATEGORY])
    depth: int = 3
    limit: int | None = None
    thumb_width: int = 512
    sdc: bool = True
    bounds: ListingBounds = field(default_factory=ListingBounds)   # (not in key(): raising one resumes the run)

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


class QueuedFile(NamedTuple):
    """A file of a listing response, waiting for its SDC (when it wants one) and its turn to be stored."""
    page: dict                 # {"pageid", "title", and "imageinfo" or "imageinfo_malformed"} (records.listing_pages)
    info: dict | None          # its imageinfo (None: the API gave none)
    wants_sdc: bool            # extmetadata would accept it and SDC is read: it waits for wbgetentities

    @property
    def pageid(self) -> int:
        return self.page["pageid"]


class Decided(NamedTuple):
    """A file decided (and downloaded when accepted) in store_ready, not yet stored."""
    record: FileRecord
    meta_hash: str


@dataclass
class QueuedResponse:
    """The new files of one API response, waiting (in order) for their SDC and their turn; the category's
    continuation after that response is committed in the transaction that stores the response's last file."""
    cat: CategoryState
    items: list[QueuedFile]
    cont: dict | None          # the category's continue set after this response (None: the category is done)
    done: int = 0              # items handled so far

    @property
    def waiting(self) -> list[QueuedFile]:
        return self.items[self.done:]


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
        self.pending: list[QueuedResponse] = []         # FIFO of responses whose files are not all stored yet
        self.taken: set[int] = set()           # pageids queued in this process (a file in several categories: once)
        self.sdc: dict[int, dict | None] = {}  # pageid -> its MediaInfo entity (None: none given), fetched, not yet used
                                               # (one of the wrong type is kept: build_record rejects its file)
        self.stopped = False                   # --limit reached

    def file_params(self, cat: CategoryState) -> dict:
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
                if mid[1:].isdigit():
                    out[int(mid[1:])] = ent  # (an entity of the wrong type rejects its file: records.sdc_problem)
        return out

    # ---- reading one category --------------------------------------------------------------
    def _item(self, page: dict) -> QueuedFile:
        info = (page.get("imageinfo") or [None])[0]
        wants = bool(self.cfg.sdc and info and not media_problem(info) and decide(info.get("extmetadata")).accepted)
        return QueuedFile(page, info, wants)

    def read_category(self, state: ScrapeState, cat: CategoryState) -> int:
        """Every response of CAT's listing, queued; returns how many members it had (files and subcategories)."""
        what = f"{self.client.api_url} ({cat.title})"
        params = self.file_params(cat)
        seen_conts: set[str] = set()   # continuations of this category (A, B, A, B never ends)
        in_batch: set[int] = set()     # files given imageinfo in this generator batch
        listed: set = set()            # pageids given imageinfo and subcategories named, in this listing (progress)
        found, c = 0, dict(cat.files_cont or {})
        requests, idle, t0 = 0, 0, time.monotonic()
        while True:
            data = self.client.api({**params, **c})
            requests += 1
            subcats, files = listing_pages(data, what, self.client.notify)
            new = len(listed)
            nxt = continue_of(data, what)
            if nxt:
                key = hash_json(nxt)
                if key in seen_conts:
                    raise PddError(f"{self.client.api_url}: the API repeated a continuation of {cat.title} "
                                   f"({str(nxt)[:120]}) after {len(seen_conts)} responses; stopping (what is stored is kept)")
                seen_conts.add(key)
            if subcats and cat.depth < self.cfg.depth:
                state.queue_subcats(cat, subcats)
            listed.update(subcats)
            complete = "batchcomplete" in data or not nxt
            items = []
            for page in files:
                pid = page["pageid"]
                given = "imageinfo" in page or "imageinfo_malformed" in page
                if pid in in_batch or not (given or complete):
                    continue  # (listed again in a later response of the batch, or its imageinfo is still to come)
                in_batch.add(pid)
                listed.add(pid)
                if pid in self.taken or state.file_done(pid):
                    self.report.duplicates += 1
                    continue
                self.taken.add(pid)
                items.append(self._item(page))  # at the batch's end, a file never given imageinfo is rejected for it
            if complete:
                found += len(subcats) + len(in_batch)
                in_batch = set()
                self.report.batches += 1
            self.pending.append(QueuedResponse(cat, items, nxt or None))
            self.drain(state)
            if self.stopped or not nxt:
                return found
            idle = 0 if len(listed) > new else idle + 1
            self.check_bounds(cat, requests, idle, time.monotonic() - t0)
            c = dict(nxt)  # replace the whole continue set

    def check_bounds(self, cat: CategoryState, requests: int, idle: int, elapsed: float) -> None:
        """Stop (one line) when CAT's listing has hit a bound of ScrapeConfig; called after a response is
        queued, so every continuation committed so far is kept and the same command resumes."""
        cfg = self.cfg.bounds
        if idle >= cfg.max_idle_requests:
            hit = (f"{idle} listing requests in a row named no new file or subcategory (the continuation keeps changing)",
                   f"--max-idle-requests (now {cfg.max_idle_requests})")
        elif requests >= cfg.max_category_requests:
            hit = f"{requests} listing requests did not reach its end", f"--max-category-requests (now {cfg.max_category_requests})"
        elif elapsed >= cfg.category_deadline:
            hit = f"its listing did not end within {elapsed:.0f} s", f"--category-deadline (now {cfg.category_deadline:g} s)"
        else:
            return
        raise PddError(f"{self.client.api_url}: {cat.title}: {hit[0]}; stopped (what is stored is kept, the same command "
                       f"resumes here); if this category really is like that, raise {hit[1]}")

    # ---- deciding and storing, in order ------------------------------------------------------
    def drain(self, state: ScrapeState, final: bool = False) -> None:
        """Store every queued file whose SDC is known; fetch SDC when 50 files wait for it (or at the end,
        or when fewer than 50 would reach --limit)."""
        while True:
            self.store_ready(state)
            if self.stopped or not self.pending:
                return
            wanted = [it.pageid for u in self.pending for it in u.waiting if it.wants_sdc and it.pageid not in self.sdc]
            need = BATCH if self.cfg.limit is None else max(1, min(BATCH, self.cfg.limit - self.report.accepted))
            if not wanted or not (final or len(wanted) >= need):
                return
            got = self.fetch_sdc(wanted[:BATCH])
            self.sdc.update({pid: got.get(pid) for pid in wanted[:BATCH]})

    def store_ready(self, state: ScrapeState) -> None:
        """Decide, download and store the queued files up to the first still waiting for SDC; commit them,
        their per-file status and the continuation of every response now complete, in one transaction."""
        ready: list[QueuedFile] = []
        for u in self.pending:
            for it in u.waiting:
                if it.wants_sdc and it.pageid not in self.sdc:
                    break
                ready.append(it)
            else:
                continue
            break
        if not ready and not (self.pending and not self.pending[0].waiting):
            return
        before = state.previous_meta([it.pageid for it in ready])
        recs: list[Decided] = []
        unchanged: list[FileStatus] = []
        n = 0
        accepted = self.report.accepted
        for it in ready:
            pid = it.pageid
            ent = self.sdc.pop(pid, None) if it.wants_sdc else None
            n += 1
            mh = meta_hash(it.info, ent, self.cfg.thumb_width)
            if pid in before and before[pid].meta_hash == mh:
                unchanged.append(FileStatus(pid, it.page.get("title"), "unchanged", "unchanged since the last scrape", None, mh))
                continue
            rec = build_record(self.client, it.page, it.info, ent)
            recs.append(Decided(rec, mh))
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
        rows: list[FileStatus] = []

        def after(con, results):
            for d, stored in zip(recs, results):
                rec = d.record
                rows.append(FileStatus(int(rec.external_id), rec.title, rec.status, rec.reason, stored.revision_id, d.meta_hash))
            state.write_files(con, rows + unchanged)
            for u in complete:
                state.commit_batch(u.cat, u.cont, con)

        results = self.store.record_batch([d.record for d in recs], after)
        state.files_committed(rows + unchanged)
        for u, take in takes:
            u.done += take
        del self.pending[:len(complete)]
        for rec, stored in zip((d.record for d in recs), results):
            self.report.seen += 1
            self.report.new_revisions += int(stored.created)
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
