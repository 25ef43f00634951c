"""Resume state of `pdd scrape`, kept in the store's DuckDB (tables scrape_* in pdd/source/store.py).

A *run* is one walk of a configuration (API, root categories, depth, thumb width, SDC). A run that
did not finish is resumed by the same command; a finished one is followed by a new run, which
re-visits everything (that is how a re-scrape finds changed files).

Within a run: the visited set and the frontier are the rows of scrape_categories (breadth-first by
seq); a category is read with one listing of its subcategories and files together, and keeps the
continuation set of its next response (files_cont; subcats_cont, written by older versions, is unused);
scrape_files lists every file already handled in this run (so a file in several categories is
fetched and stored once). A response's continuation is committed in the same transaction as the
last of its files (files wait for their SDC across responses and categories, so that commit may
come later and hold several categories' continuations).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from pdd.core.hashing import canonical_json, hash_json
from pdd.source.store import Store


@dataclass
class CategoryState:
    seq: int
    title: str
    depth: int
    subcats_cont: dict | None
    subcats_done: bool
    files_cont: dict | None
    files_done: bool
    batches: int


class FileStatus(NamedTuple):
    """One row of scrape_files: how a file was handled in this run."""
    pageid: int
    title: str | None
    status: str                # accepted, rejected or unchanged
    reason: str | None
    revision_id: int | None    # None: unchanged (no revision recorded)
    meta_hash: str             # records.meta_hash of its imageinfo, SDC and thumb width


class PreviousObservation(NamedTuple):
    meta_hash: str
    status: str


def _loads(text: str | None) -> dict | None:
    return json.loads(text) if text else None


class ScrapeState:
    def __init__(self, store: Store, config: dict):
        self.store = store
        self.con = store.con
        self.config = config
        self.key = hash_json(config)
        self.resumed = False
        row = self.con.execute(
            "SELECT run_id FROM scrape_runs WHERE config_key = ? AND finished_at IS NULL ORDER BY run_id DESC LIMIT 1",
            [self.key],
        ).fetchone()
        if row:
            self.run_id = row[0]
            self.resumed = True
        else:
            with store.transaction() as con:
                self.run_id = con.execute("SELECT nextval('scrape_run_seq')").fetchone()[0]
                con.execute("INSERT INTO scrape_runs (run_id, api, config_key, config) VALUES (?, ?, ?, ?)",
                            [self.run_id, config["api"], self.key, canonical_json(config)])
                for i, title in enumerate(config["categories"]):
                    con.execute("INSERT INTO scrape_categories (run_id, seq, title, depth) VALUES (?, ?, ?, 0)",
                                [self.run_id, i + 1, title])
        self.visited = {r[0] for r in self.con.execute(
            "SELECT title FROM scrape_categories WHERE run_id = ?", [self.run_id]).fetchall()}
        self.done_files = {r[0] for r in self.con.execute(
            "SELECT pageid FROM scrape_files WHERE run_id = ?", [self.run_id]).fetchall()}

    # ---- the walk --------------------------------------------------------------------------
    def next_category(self, skip: set[str] | frozenset = frozenset()) -> CategoryState | None:
        """The first category (breadth-first) not yet done, leaving out SKIP (read to their end in this
        process, their last files not yet committed)."""
        rows = self.con.execute(
            "SELECT seq, title, depth, subcats_cont, subcats_done, files_cont, files_done, batches FROM scrape_categories "
            "WHERE run_id = ? AND NOT (subcats_done AND files_done) ORDER BY seq LIMIT ?", [self.run_id, len(skip) + 1]).fetchall()
        for seq, title, depth, subcats_cont, subcats_done, files_cont, files_done, batches in rows:
            if title not in skip:
                return CategoryState(seq, title, depth, _loads(subcats_cont), subcats_done, _loads(files_cont), files_done, batches)
        return None

    def queue_subcats(self, cat: CategoryState, titles: list[str]) -> list[str]:
        """Queue the unseen subcategories of CAT (read in the same listing as its files), atomically."""
        if not any(t not in self.visited for t in titles):
            return []
        added = []
        with self.store.transaction() as con:
            seq = con.execute("SELECT coalesce(max(seq), 0) FROM scrape_categories WHERE run_id = ?", [self.run_id]).fetchone()[0]
            for title in titles:
                if title in self.visited or title in added:
                    continue
                seq += 1
                con.execute("INSERT INTO scrape_categories (run_id, seq, title, depth) VALUES (?, ?, ?, ?)",
                            [self.run_id, seq, title, cat.depth + 1])
                added.append(title)
        self.visited.update(added)
        return added

    def commit_batch(self, cat: CategoryState | None, cont: dict | None, con=None) -> None:
        """Advance the category's file continuation past a fully stored batch (inside ``con``'s
        transaction when given: the batch's files and its continuation commit together)."""
        if cat is None:
            return
        # (subcategories come in the same listing as the files: a category read to its end is done with both)
        sql = ("UPDATE scrape_categories SET files_cont = ?, files_done = ?, subcats_done = subcats_done OR ?, batches = batches + 1 "
               "WHERE run_id = ? AND seq = ?")
        args = [canonical_json(cont) if cont else None, cont is None, cont is None, self.run_id, cat.seq]
        if con is not None:
            con.execute(sql, args)
        else:
            with self.store.transaction() as c:
                c.execute(sql, args)
        cat.files_cont, cat.files_done = cont, cont is None
        cat.subcats_done = cat.subcats_done or cont is None
        cat.batches += 1

    # ---- files --------------------------------------------------------------------------------
    def file_done(self, pageid: int) -> bool:
        return pageid in self.done_files

    def write_files(self, con, rows: list[FileStatus]) -> None:
        """The rows of scrape_files for ROWS, inside the batch transaction."""
        if rows:
            con.executemany(
                "INSERT INTO scrape_files (run_id, pageid, title, status, reason, revision_id, meta_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[self.run_id, *r] for r in rows])

    def files_committed(self, rows: list[FileStatus]) -> None:
        self.done_files.update(r.pageid for r in rows)

    def previous_meta(self, pageids: list[int]) -> dict[int, PreviousObservation]:
        """pageid -> the newest earlier observation of each file (any run)."""
        if not pageids:
            return {}
        rows = self.con.execute(
            "SELECT pageid, meta_hash, status FROM scrape_files WHERE pageid IN (SELECT unnest(?)) AND run_id <> ? "
            "AND status <> 'unchanged' QUALIFY row_number() OVER (PARTITION BY pageid ORDER BY run_id DESC, seen_at DESC) = 1",
            [pageids, self.run_id]).fetchall()
        return {pageid: PreviousObservation(mh, status) for pageid, mh, status in rows}

    def finish(self) -> None:
        self.con.execute("UPDATE scrape_runs SET finished_at = current_timestamp WHERE run_id = ?", [self.run_id])

    def summary(self) -> dict:
        rows = self.con.execute(
            "SELECT status, reason, count(*) FROM scrape_files WHERE run_id = ? GROUP BY ALL ORDER BY 3 DESC, 2", [self.run_id]).fetchall()
        return {"by_reason": [(s, r, n) for s, r, n in rows]}
