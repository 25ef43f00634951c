"""The dataset card of a snapshots folder (data/snapshots/README.md), so that
`datasets.load_dataset("data/snapshots", NAME)` reads a pinned snapshot with no project code, its `image`
column decoded to PIL images. One `configs:` entry per snapshot in the folder (split `train`: a snapshot is
the whole pinned collection, before the export splits it) and its column types under `dataset_info:`.
The snapshot files themselves are not touched (their bytes are pinned); `pdd snapshot pin` refreshes the card,
and `pdd snapshot card` writes it for a folder as it is.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pdd import snapshot
from pdd.core import datacard
from pdd.core.errors import PddError

IMAGES = frozenset({"image"})
PRETTY_NAME = "PD-Diffusion dataset snapshots"   # marks a README.md as ours: another one is never overwritten
LICENCES = {"cc0": "cc0-1.0"}   # snapshot licence kinds with a Hub licence id; public domain (pd) has none


def snapshots_in(snap_dir: str | Path) -> list[tuple[str, Path]]:
    """(name, path) of every readable snapshot in SNAP_DIR, by name; other .parquet files are left out."""
    found = []
    for path in sorted(Path(snap_dir).glob("*.parquet")):
        try:
            meta = snapshot.read_meta(path)
        except PddError:
            continue
        if meta.get("pdd.format") == snapshot.SNAPSHOT_FORMAT and meta.get("pdd.snapshot") == path.stem:
            found.append((path.stem, path))
    return found


def _counts(path: Path, column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in pq.read_table(path, columns=[column]).column(column).to_pylist():
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def ours(card: Path) -> bool:
    """Whether CARD is absent or a card this module wrote (so it may be rewritten)."""
    import yaml
    from huggingface_hub.repocard import metadata_load

    if not card.exists():
        return True
    try:
        return (metadata_load(card) or {}).get("pretty_name") == PRETTY_NAME
    except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
        return False


def card_args(snap_dir: str | Path) -> tuple[str, dict] | None:
    """(markdown body, DatasetCardData fields) for the snapshots in SNAP_DIR; None when there are none."""
    snap_dir = Path(snap_dir)
    snaps = snapshots_in(snap_dir)
    if not snaps:
        return None
    configs, infos, rows, kinds = [], [], [], {}
    for name, path in snaps:
        schema = pq.read_schema(path)
        meta = snapshot.read_meta(path)
        n = pq.ParquetFile(path).metadata.num_rows
        lic = _counts(path, "licence_kind")
        for k, v in lic.items():
            kinds[k] = kinds.get(k, 0) + v
        configs.append({"config_name": name, "data_files": [{"split": "train", "path": path.name}]})
        infos.append({"config_name": name, "features": datacard.features(schema, IMAGES)})
        rows.append(f"| `{name}` | {n} | {', '.join(f'{k} {v}' for k, v in lic.items())} | "
                    f"`{meta.get('pdd.content_hash', '')[:16]}` |")
    licences = sorted({LICENCES.get(k, "other") for k in kinds})
    extra = {"license_name": "public-domain"} if "other" in licences else {}
    first = snaps[0][0]
    body = f"""# PD-Diffusion dataset snapshots

Pinned, content-hashed snapshots (`pdd snapshot pin`): the build's source data. Each row is one accepted
public-domain or CC0 file: its image bytes as pinned (`image`, decoded by `datasets`), its licence decision
and the evidence for it, its labels (`labels`, JSON; each label carries its own licence, and only labels
whose licence the build allows become captions) and where it came from.

| snapshot (config) | rows | images by licence | content hash |
|---|---|---|---|
""" + "\n".join(rows) + f"""

```python
from datasets import load_dataset
ds = load_dataset("data/snapshots", "{first}", split="train")
ds[0]["image"]                                   # a PIL image
```

`pdd snapshot verify NAME` checks a file against its content hash; `pdd snapshot show NAME` says more.
"""
    return body, dict(pretty_name=PRETTY_NAME, license=licences[0] if len(licences) == 1 else licences, **extra,
                      task_categories=["text-to-image"], configs=configs,
                      dataset_info=infos[0] if len(infos) == 1 else infos)


def render(snap_dir: str | Path) -> str | None:
    """The card's text for SNAP_DIR as `write` would write it (None when there are no snapshots)."""
    args = card_args(snap_dir)
    return None if args is None else datacard.render(args[0], **args[1])


def write(snap_dir: str | Path) -> Path | None:
    """Write SNAP_DIR/README.md for the snapshots in it (None, and nothing written, when there are none).
    A README.md this module did not write is refused, never overwritten."""
    card = Path(snap_dir) / "README.md"
    if not ours(card):
        raise PddError(f"{card} exists and is not a snapshot card written by pdd; move it away to write one")
    args = card_args(snap_dir)
    return None if args is None else datacard.write(card, args[0], **args[1])
