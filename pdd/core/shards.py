"""The training-shard format written by `export` and read by every training stage.

    data/export/
      index.json                 format, resolutions, row counts, shard names, caption template
      README.md                  a Hugging Face dataset card: splits and column types for `datasets`
      train-00000.parquet ...    rows sorted by file_id
      val-00000.parquet ...
    data/export.manifest.json    (beside the folder, see stages/manifest.py)

Columns: file_id (string), sha256 (of the snapshot image), caption (string), and per
resolution R in index.json an `image_R` column holding an image the way `datasets` stores one, a
struct {bytes: binary, path: string (null)}, whose bytes are a binary PPM: the fixed header
`P6\\nR R\\n255\\n` and then the raw RGB uint8 pixels, R*R*3 bytes, row-major HWC (no codec: nothing to
decode, nothing nondeterministic; any image library opens it). Each file says so itself, in its Parquet
key-value metadata: `pdd.format`, `pdd.layout` (per image column: resolution, shape, dtype, header
size) and `huggingface` (the column types for `datasets`, which then decodes image_R to PIL images).
So `datasets.load_dataset("data/export")` (by the card) or `load_dataset("parquet", data_files=...)`
(by the metadata) needs no project code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pdd.core import datacard
from pdd.core.errors import PddError
from pdd.core.hashing import write_json

FORMAT = "pdd-shards/2"
LAYOUT = "image_R: struct {bytes: binary PPM (header P6\\nR R\\n255\\n, then raw RGB uint8, HWC, row-major), path: null}"
SPLITS = ("train", "val")
CARD_SPLITS = {"train": "train", "val": "validation"}   # the names `datasets` and the Hub use
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])   # datasets.Image()'s storage
# Raw pixels shrink only ~9% under zstd while compressing them costs more than a third of the export's
# non-decoding time, so image columns are stored uncompressed; the text columns get zstd.
WRITE_OPTIONS = dict(use_dictionary=False, write_statistics=False, write_page_index=False, store_schema=False)


def compression(resolutions: list[int]) -> dict:
    # keys are Parquet column paths: an image struct's leaves are image_R.bytes and image_R.path
    return {"file_id": "zstd", "sha256": "zstd", "caption": "zstd",
            **{f"{image_column(r)}.{leaf}": "none" for r in resolutions for leaf in ("bytes", "path")}}


def image_column(resolution: int) -> str:
    return f"image_{resolution}"


def ppm_header(resolution: int) -> bytes:
    return f"P6\n{resolution} {resolution}\n255\n".encode("ascii")


def schema(resolutions: list[int]) -> pa.Schema:
    """The shards' Arrow schema, with the layout in its metadata (written as Parquet key-value metadata)."""
    plain = pa.schema([("file_id", pa.string()), ("sha256", pa.string()), ("caption", pa.string())]
                      + [(image_column(r), IMAGE_TYPE) for r in resolutions])
    images = {image_column(r) for r in resolutions}
    layout = {image_column(r): {"resolution": r, "shape": [r, r, 3], "dtype": "uint8", "order": "HWC",
                                "encoding": "ppm-p6", "header_bytes": len(ppm_header(r))} for r in resolutions}
    return plain.with_metadata({"pdd.format": FORMAT, "pdd.layout": json.dumps(layout, separators=(",", ":")),
                                "huggingface": datacard.hf_metadata(plain, images)})


def encode_image(pixels: bytes, resolution: int) -> dict:
    """Raw RGB pixels (R*R*3 bytes, HWC) -> the stored image struct."""
    if len(pixels) != resolution * resolution * 3:
        raise PddError(f"shards: an image of {len(pixels)} bytes is not {resolution}x{resolution} RGB; this is a bug")
    return {"bytes": ppm_header(resolution) + pixels, "path": None}


ROW_GROUP_ROWS = 64  # written as soon as full, so compression overlaps with decoding in export


class ShardWriter:
    """Writes one split as numbered shards of shard_rows rows, streaming: add() rows in their fixed
    order (each row group is written as soon as it is full), close() returns the shard names.
    A split with no rows still gets one (empty) shard. Bytes depend only on the rows and params."""

    def __init__(self, out_dir: str | Path, split: str, resolutions: list[int], shard_rows: int):
        self.out_dir, self.split, self.shard_rows = Path(out_dir), split, shard_rows
        self.schema = schema(resolutions)
        self.resolutions = list(resolutions)
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
        cols = {f.name: [r[f.name] for r in self.buffer] for f in self.schema}
        for res in self.resolutions:   # rows carry raw pixels; the shard stores them as image structs
            cols[image_column(res)] = [encode_image(px, res) for px in cols[image_column(res)]]
        table = pa.table(cols, schema=self.schema)
        self._writer[1].write_table(table, row_group_size=self.group)
        self.buffer = []

    def _finish_shard(self) -> None:
        name, writer = self._writer
        writer.add_key_value_metadata(self.schema.metadata)   # store_schema=False writes no schema metadata itself
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
    """index.json, and the dataset card README.md made from it."""
    write_json(Path(out_dir, "index.json"), index)
    write_card(out_dir, index)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def write_card(out_dir: str | Path, index: dict) -> Path:
    """README.md: a Hugging Face dataset card for the export (huggingface_hub's DatasetCard), whose front
    matter lists each split's shards (`configs:`) and the column types (`dataset_info:`), so that
    `datasets.load_dataset(out_dir)` gives PIL images (or (R, R, 3) arrays with_format("numpy"))."""
    res = index["resolutions"]
    cols = schema(res)
    images = [image_column(r) for r in res]
    configs = [{"config_name": "default",
                "data_files": [{"split": CARD_SPLITS[s], "path": list(index["shards"][s])} for s in SPLITS]}]
    info = {"features": datacard.features(cols, set(images))}
    total = sum(int(index["counts"][s]) for s in SPLITS)
    col = images[-1]
    counts = index["counts"]
    body = f"""# Training export ({index["format"]})

The training data of one build, written by its `export` stage (`pdd/core/shards.py`): {total} images with their
captions, {counts["train"]} in `train` and {counts["val"]} in `validation` (files `val-*`). Every image is public
domain or CC0 (the build's licence audit passed every row); captions come only from labels whose own licence
the build's `export.caption.label_licences` allows (the model card lists any that need attribution).

| column | holds |
|---|---|
| `file_id` | the snapshot's file id |
| `sha256` | sha256 of the original image bytes in the snapshot |
| `caption` | the caption (`{index["caption_template"]}`) |
""" + "".join(f"| `{image_column(r)}` | the image, {r}x{r} px RGB: a binary PPM in `{{bytes, path}}`, decoded by `datasets` |\n"
              for r in res) + f"""
```python
from datasets import load_dataset
ds = load_dataset("data/export")                  # this folder: splits train, validation
ds["train"][0]["{col}"]                        # a PIL image
ds["train"].with_format("numpy")[0]["{col}"].shape   # {(res[-1], res[-1], 3)}
```

`load_dataset("parquet", data_files=...)` on the shards alone gives the same: each file's Parquet key-value
metadata carries the column types (`huggingface`) and the layout (`pdd.format`, `pdd.layout`).
"""
    return datacard.write(Path(out_dir) / "README.md", body, pretty_name="PD-Diffusion training export",
                          license="other", license_name="public-domain-and-cc0", task_categories=["text-to-image"],
                          language=["en"], size_categories=[_size_category(total)], configs=configs, dataset_info=info)


def read_index(export_dir: str | Path) -> dict:
    path = Path(export_dir) / "index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PddError(f"{path} not found: build the export stage first (`dvc repro export`)") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        got = index.get("format") if isinstance(index, dict) else None
        raise PddError(f"{path}: export format {got!r}, this code reads {FORMAT!r}: rebuild the export (`dvc repro export`)")
    return index


def read_split(export_dir: str | Path, split: str, columns: list[str] | None = None) -> pa.Table:
    """All shards of one split as one table, in their fixed order."""
    index = read_index(export_dir)
    if split not in index["shards"]:
        raise PddError(f"{export_dir}: no split {split!r} (have {', '.join(index['shards'])})")
    tables = [pq.read_table(Path(export_dir) / name, columns=columns) for name in index["shards"][split]]
    return pa.concat_tables(tables) if tables else schema(index["resolutions"]).empty_table()


def images_array(table: pa.Table, resolution: int) -> np.ndarray:
    """The image_R column as a uint8 array of shape [N, R, R, 3] (a view; copy it to write)."""
    col = table.column(image_column(resolution))
    if not len(col):
        return np.zeros((0, resolution, resolution, 3), dtype=np.uint8)
    data = b"".join(b for chunk in col.chunks for b in pc.struct_field(chunk, "bytes").to_pylist())
    head = ppm_header(resolution)
    rows = np.frombuffer(data, dtype=np.uint8)
    if rows.size != len(col) * (len(head) + resolution * resolution * 3):
        raise PddError(f"{image_column(resolution)}: images are not {resolution}x{resolution} PPM; rebuild the export (`dvc repro export`)")
    rows = rows.reshape(len(col), -1)
    if not (rows[:, :len(head)] == np.frombuffer(head, dtype=np.uint8)).all():
        raise PddError(f"{image_column(resolution)}: images are not {resolution}x{resolution} PPM; rebuild the export (`dvc repro export`)")
    return rows[:, len(head):].reshape(len(col), resolution, resolution, 3)
