"""Training data for the shared loop: one seeded order, two ways to read it.

A split is a list of *blocks* (the Parquet row groups of its shards, in file_id order). The order of
epoch e is a pure function of (seed, stage, e, the block sizes, the shuffle window):

* window >= all blocks: a plain random permutation of every row;
* otherwise: the blocks are permuted, taken `window` blocks at a time, and the rows of each group of
  blocks are permuted among themselves (a shuffle buffer of `window` row groups).

`ArraySource` holds the whole split in memory; `ShardSource` streams it, keeping at most about
`window` row groups in memory. Both prepare rows with the same function and serve the same rows for
the same indices, so for the same window they give identical batches (tests/test_loop.py). Which one
a stage gets is decided by `open_split` from the split's size and the stage's memory budget.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pdd.core.determinism import derive_seed
from pdd.core import shards

Prepare = Callable[[pa.Table], dict]          # rows of a shard table -> row-aligned tensors (CPU)
Transform = Callable[[dict], dict]             # a gathered batch -> what the model eats (e.g. uint8 -> float)


def epoch_order(blocks: list[int], window: int, seed: int, name: str, epoch: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, name, "epoch", str(epoch)))
    n = sum(blocks)
    if window >= len(blocks):
        return torch.randperm(n, generator=g)
    starts = [0]
    for b in blocks[:-1]:
        starts.append(starts[-1] + b)
    perm = torch.randperm(len(blocks), generator=g).tolist()
    out = []
    for w in range(0, len(perm), window):
        rows = torch.cat([torch.arange(starts[b], starts[b] + blocks[b]) for b in perm[w:w + window]])
        out.append(rows[torch.randperm(len(rows), generator=g)])
    return torch.cat(out)


class ArraySource:
    """The whole split as tensors in memory."""
    streaming = False

    def __init__(self, arrays: dict, blocks: list[int], transform: Transform | None = None):
        self.arrays, self.blocks, self.transform = arrays, list(blocks), transform
        self.n = sum(self.blocks)
        self.window = len(self.blocks)

    def fetch(self, idx: torch.Tensor) -> dict:
        batch = {k: v[idx] for k, v in self.arrays.items()}
        return self.transform(batch) if self.transform else batch


class ShardSource:
    """The split streamed from its Parquet shards row group by row group (bounded memory)."""
    streaming = True

    def __init__(self, files: list[Path], columns: list[str], prepare: Prepare, window: int,
                 transform: Transform | None = None, batch_size: int = 1):
        self.files, self.columns, self.prepare, self.transform = files, columns, prepare, transform
        self.index = []                       # block -> (file, row group), in row order
        self.blocks = []
        for f in files:
            meta = pq.ParquetFile(f).metadata
            for rg in range(meta.num_row_groups):
                self.index.append((f, rg))
                self.blocks.append(meta.row_group(rg).num_rows)
        self.n = sum(self.blocks)
        self.window = max(1, min(window, len(self.blocks)))
        self.starts = torch.tensor([0] + self.blocks[:-1]).cumsum(0) if self.blocks else torch.zeros(0)
        smallest = max(1, min(self.blocks)) if self.blocks else 1
        self.capacity = self.window + (batch_size + smallest - 1) // smallest + 1
        self._cache: OrderedDict = OrderedDict()
        self._files: dict = {}
        self.loaded_blocks = 0                # how many row-group reads (for tests and benches)

    def _block(self, b: int) -> dict:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        f, rg = self.index[b]
        pf = self._files.get(f) or self._files.setdefault(f, pq.ParquetFile(f))
        rows = self.prepare(pf.read_row_group(rg, columns=self.columns))
        self.loaded_blocks += 1
        self._cache[b] = rows
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return rows

    def fetch(self, idx: torch.Tensor) -> dict:
        block_of = torch.searchsorted(self.starts, idx, right=True) - 1
        parts, order = [], []
        for b in dict.fromkeys(block_of.tolist()):   # blocks in first-use order
            sel = (block_of == b).nonzero().flatten()
            rows = self._block(b)
            local = idx[sel] - self.starts[b]
            parts.append({k: v[local] for k, v in rows.items()})
            order.append(sel)
        pos = torch.cat(order).argsort()
        batch = {k: torch.cat([p[k] for p in parts])[pos] for k in parts[0]}
        return self.transform(batch) if self.transform else batch


def split_files(export_dir: str | Path, split: str) -> list[Path]:
    index = shards.read_index(export_dir)
    return [Path(export_dir) / name for name in index["shards"][split]]


def split_bytes(files: list[Path], columns: list[str]) -> int:
    """Uncompressed size of the columns over the split (what preloading would hold, roughly)."""
    total = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]   # an image struct has 2 leaves
        for rg in range(meta.num_row_groups):
            g = meta.row_group(rg)
            total += sum(g.column(i).total_uncompressed_size for i, n in enumerate(names) if n in columns)
    return total


def open_split(export_dir: str | Path, split: str, columns: list[str], prepare: Prepare, *, budget_mb: int,
               transform: Transform | None = None, batch_size: int = 1, streaming: bool | None = None,
               window: int | None = None):
    """The split as a data source: preloaded if it fits in budget_mb, else streamed with a shuffle window
    that fits the budget. `streaming`/`window` force a choice (tests, benches)."""
    files = split_files(export_dir, split)
    size = split_bytes(files, columns)
    n_blocks = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    budget = budget_mb * 2**20
    if window is None:
        window = n_blocks if size <= budget else max(1, int(budget / max(1, size / max(1, n_blocks))) - 1)
    if streaming is None:
        streaming = size > budget
    if streaming:
        return ShardSource(files, columns, prepare, window, transform, batch_size)
    tables = [pq.read_table(f, columns=columns) for f in files]
    table = pa.concat_tables(tables) if tables else None
    blocks = [pq.ParquetFile(f).metadata.row_group(rg).num_rows for f in files
              for rg in range(pq.ParquetFile(f).metadata.num_row_groups)]
    src = ArraySource(prepare(table) if table is not None and table.num_rows else {}, blocks, transform)
    src.window = window
    return src
