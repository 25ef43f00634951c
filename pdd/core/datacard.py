"""Hugging Face dataset cards for the Parquet data this project writes (the export, the snapshots), so that
`datasets.load_dataset` reads them with no project code: a README.md whose YAML front matter says which
files make which split (`configs:`) and what each column holds (`dataset_info.features:`, image columns as
`image`, which `datasets` decodes to PIL images). Written with huggingface_hub's DatasetCard and
DatasetCardData; the same column types go into each Parquet file's `huggingface` key-value metadata
(`hf_metadata`), which `datasets` reads when it is given the files alone (`load_dataset("parquet", ...)`).
Nothing here depends on time or place: the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from pdd.core.errors import PddError

# Arrow type -> the `dtype` of a `datasets` Value (only the types our files use)
_DTYPES = {pa.string(): "string", pa.large_string(): "large_string", pa.binary(): "binary",
           pa.large_binary(): "large_binary", pa.bool_(): "bool", pa.int32(): "int32", pa.int64(): "int64",
           pa.float32(): "float32", pa.float64(): "float64"}
TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


def _dtype(field: pa.Field) -> str:
    try:
        return _DTYPES[field.type]
    except KeyError:
        raise PddError(f"column {field.name} ({field.type}) has no `datasets` type in pdd/core/datacard.py; this is a bug") from None


def features(schema: pa.Schema, images: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """The card's `dataset_info.features`: one entry per column, `image` for the columns in `images`."""
    return [{"name": f.name, "dtype": "image" if f.name in images else _dtype(f)} for f in schema]


def hf_metadata(schema: pa.Schema, images: set[str] | frozenset[str] = frozenset()) -> str:
    """The Parquet `huggingface` key-value metadata: the column types as `datasets` writes them itself
    ({"info": {"features": ...}}); an image column must be stored as struct<bytes: binary, path: string>."""
    feats = {f.name: {"_type": "Image"} if f.name in images else {"dtype": _dtype(f), "_type": "Value"} for f in schema}
    return json.dumps({"info": {"features": feats}}, sort_keys=False, separators=(",", ":"))


def render(body: str, **card_data) -> str:
    """The card's text: DatasetCardData(**card_data) as YAML front matter, then the markdown body."""
    from huggingface_hub.repocard import DatasetCard   # the card classes only: they render and save locally
    from huggingface_hub.repocard_data import DatasetCardData

    return str(DatasetCard.from_template(DatasetCardData(**card_data), template_str=TEMPLATE, body=body.strip()))


def write(path: str | Path, body: str, **card_data) -> Path:
    """Write the card to PATH atomically (temp file, rename): a reader never sees half a card."""
    from huggingface_hub.repocard import DatasetCard

    path = Path(path)
    card = DatasetCard(render(body, **card_data))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        card.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
