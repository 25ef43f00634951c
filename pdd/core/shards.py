"""The training-shard format written by `export` and read by every training stage.

    data/export/
      index.json                 resolutions, row counts, shard names, caption template
      train-00000.parquet ...    rows sorted by file_id
      val-00000.parquet ...
    data/export.manifest.json    (beside the folder, see stages/manifest.py)

Columns: file_id (string), sha256 (of the snapshot image), caption (string), and per
resolution R in index.json an `image_R` column: raw RGB uint8 pixels, R*R*3 bytes,
row-major HWC (no codec: nothing to decode, nothing nondeterministic).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pdd.core.errors import PddError
from pdd.core.hashing import write_json

SPLITS = ("train", "val")
# Raw pixels shrink only ~9% under zstd while compressing them costs more than a third of the export's
# non-decoding time, so image columns are stored uncompressed; the text columns get zstd.
WRITE_OPTIONS = dict(use_dictionary=False, write_statistics=False, write_page_index=False, store_schema=False)


def compression(resolutions: list[int]) -> dict:
    return {"file_id": "zstd", "sha256": "zstd", "caption": "zstd", **{image_column(r): "none" for r in resolutions}}


def image_column(resolution: int) -> str:
    return f"image_{resolution}"


def schema(resolutions: list[int]) -> pa.Schema:
    return pa.schema([("file_id", pa.string()), ("sha256", pa.string()), ("caption", pa.string())]
                     + [(image_column(r), pa.binary()) for r in resolutions])


ROW_GROUP_ROWS = 64  # written as soon as full, so compression overlaps with decoding in export


class ShardWriter:
    """Writes one split as numbered shards of shard_rows rows, streaming: add() rows in their fixed
    order (each row group is written as soon as it is full), close() returns the shard names.
    A split with no rows still gets one (empty) shard. Bytes depend only on the rows and params."""

    def __init__(self, out_dir: str | Path, split: str, resolutions: list[int], shard_rows: int):
        self.out_dir, self.split, self.shard_rows = Path(out_dir), split, shard_rows
        self.schema = schema(resolutions)
        self.compression = compression(resolutions)
        self.group = max(1, min(shard_rows, ROW_GROUP_ROWS))
        self.buffer: list[dict] = []
        self.names: list[str] = []
        self.rows = 0
        self._writer = None
        self._in_shard = 0

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        self.rows += 1
        self._in_shard += 1
        if len(self.buffer) >= self.group or self._in_shard >= self.shard_rows:
            self._write_group()
        if self._in_shard >= self.shard_rows:
            self._finish_shard()

    def _tmp(self, name: str) -> Path:
        return self.out_dir / f".{name}.tmp-{os.getpid()}"

    def _write_group(self) -> None:
        if self._writer is None:
            name = f"{self.split}-{len(self.names):05d}.parquet"
            self._writer = (name, pq.ParquetWriter(self._tmp(name), self.schema, compression=self.compression, **WRITE_OPTIONS))
        table = pa.table({f.name: [r[f.name] for r in self.buffer] for f in self.schema}, schema=self.schema)
        self._writer[1].write_table(table, row_group_size=self.group)
        self.buffer = []

    def _finish_shard(self) -> None:
        name, writer = self._writer
        writer.close()
        os.replace(self._tmp(name), self.out_dir / name)
        self.names.append(name)
        self._writer, self._in_shard = None, 0

    def close(self) -> list[str]:
        if self.buffer or (not self.names and self._writer is None):
            self._write_group()
        if self._writer is not None:
            self._finish_shard()
        return self.names


def write_split(rows: list[dict], out_dir: str | Path, split: str, resolutions: list[int], shard_rows: int) -> list[str]:
    """Write rows (already in their fixed order) as numbered shards; returns the shard file names."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out_dir, split, resolutions, shard_rows)
    for row in rows:
        writer.add(row)
    return writer.close()


def write_index(out_dir: str | Path, index: dict) -> None:
    write_json(Path(out_dir, "index.json"), index)


def read_index(export_dir: str | Path) -> dict:
    path = Path(export_dir) / "index.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PddError(f"{path} not found: build the export stage first (`dvc repro export`)") from None


def read_split(export_dir: str | Path, split: str, columns: list[str] | None = None) -> pa.Table:
    """All shards of one split as one table, in their fixed order."""
    index = read_index(export_dir)
    if split not in index["shards"]:
        raise PddError(f"{export_dir}: no split {split!r} (have {', '.join(index['shards'])})")
    tables = [pq.read_table(Path(export_dir) / name, columns=columns) for name in index["shards"][split]]
    return pa.concat_tables(tables) if tables else schema(index["resolutions"]).empty_table()


def images_array(table: pa.Table, resolution: int) -> np.ndarray:
    """The image_R column as a uint8 array of shape [N, R, R, 3]."""
    col = table.column(image_column(resolution)).to_pylist()
    if not col:
        return np.zeros((0, resolution, resolution, 3), dtype=np.uint8)
    return np.frombuffer(b"".join(col), dtype=np.uint8).reshape(len(col), resolution, resolution, 3)
