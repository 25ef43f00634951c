"""The data describes itself: `datasets.load_dataset` reads the export (by its dataset card, or by the shards'
Parquet metadata alone) and the snapshots (by their folder's card) into decoded images, with no project code.
Each load runs in a child process with `python -I` outside the repository and loads no pdd module."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from pdd import snapshot_card
from pdd.core import shards
from pdd.core.hashing import hash_dir
from pdd.data import export
from conftest import REPO, engine_env, pdd_cli
from test_audit_export import CFG

pytest.importorskip("datasets", reason="datasets is pinned in requirements.lock; install it to run these tests")


def stock(code: str, cwd, tmp_path) -> dict:
    """Run CODE with `python -I` (no PYTHONPATH, no current folder on the path) in CWD; it prints one JSON line."""
    env = {**engine_env(), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf"),
           "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_EXPORT = """
    import json, sys
    import numpy as np
    from datasets import load_dataset
    out = {}
    by_card = load_dataset("export")
    by_files = load_dataset("parquet", data_files={"train": "export/train-*.parquet"})["train"]
    for key, ds in (("card", by_card["train"]), ("files", by_files)):
        img = ds[0]["image_24"]
        arr = ds.with_format("numpy")[:]["image_24"]
        out[key] = {"type": type(img).__module__, "size": list(img.size), "mode": img.mode, "shape": list(arr.shape),
                    "dtype": str(arr.dtype), "pixels": np.asarray(img).tobytes().hex(), "ids": list(ds["file_id"]),
                    "features": {k: type(v).__name__ for k, v in ds.features.items()}}
    out["splits"] = {k: len(v) for k, v in by_card.items()}
    out["pdd_loaded"] = any(m == "pdd" or m.startswith("pdd.") for m in sys.modules)
    print(json.dumps(out))
"""


def test_load_dataset_reads_the_export_as_images(tmp_path, generated_snapshot):
    index = export.export(generated_snapshot.path, tmp_path / "export", CFG, seed=7)
    got = stock(LOAD_EXPORT, tmp_path, tmp_path)
    train = shards.read_split(tmp_path / "export", "train")
    pixels = shards.images_array(train, 24)
    assert got["pdd_loaded"] is False
    assert got["splits"] == {"train": index["counts"]["train"], "validation": index["counts"]["val"]}
    for key in ("card", "files"):
        g = got[key]
        assert g["features"] == {"file_id": "Value", "sha256": "Value", "caption": "Value", "image_16": "Image",
                                 "image_24": "Image"}, key
        assert g["type"].startswith("PIL.") and g["size"] == [24, 24] and g["mode"] == "RGB"
        assert g["shape"] == [len(pixels), 24, 24, 3] and g["dtype"] == "uint8"
        assert bytes.fromhex(g["pixels"]) == pixels[0].tobytes()
        assert g["ids"] == train.column("file_id").to_pylist()


def test_shards_carry_their_layout_in_the_parquet_metadata(tmp_path, generated_snapshot):
    export.export(generated_snapshot.path, tmp_path, CFG, seed=7)
    schema = pq.read_schema(tmp_path / "train-00000.parquet")
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert meta["pdd.format"] == shards.FORMAT == json.loads((tmp_path / "index.json").read_text())["format"]
    layout = json.loads(meta["pdd.layout"])
    assert layout["image_24"] == {"resolution": 24, "shape": [24, 24, 3], "dtype": "uint8", "order": "HWC",
                                  "encoding": "ppm-p6", "header_bytes": len(b"P6\n24 24\n255\n")}
    assert json.loads(meta["huggingface"])["info"]["features"]["image_24"] == {"_type": "Image"}
    assert schema.field("image_24").type == shards.IMAGE_TYPE
    # the stored bytes are a PPM any image library opens: the header, then the raw pixels
    from PIL import Image
    import io
    raw = pq.read_table(tmp_path / "train-00000.parquet", columns=["image_24"]).column("image_24")[0].as_py()["bytes"]
    assert raw.startswith(b"P6\n24 24\n255\n")
    assert np.asarray(Image.open(io.BytesIO(raw))).tobytes() == raw[len(b"P6\n24 24\n255\n"):]


def test_export_card_is_deterministic_and_a_dataset_card(tmp_path, generated_snapshot):
    from huggingface_hub import DatasetCard

    export.export(generated_snapshot.path, tmp_path / "a", CFG, seed=7)
    export.export(generated_snapshot.path, tmp_path / "b", CFG, seed=7)
    assert hash_dir(tmp_path / "a") == hash_dir(tmp_path / "b")
    card = DatasetCard.load(tmp_path / "a/README.md")
    assert card.data.configs[0]["data_files"][0] == {"split": "train", "path": ["train-00000.parquet"]}
    assert {f["name"]: f["dtype"] for f in card.data.dataset_info["features"]}["image_24"] == "image"


LOAD_SNAPSHOT = """
    import json
    import numpy as np
    from datasets import load_dataset
    ds = load_dataset("snaps", "{name}", split="train")
    img = ds[0]["image"]
    print(json.dumps({{"type": type(img).__module__, "size": list(img.size), "mode": img.mode, "n": len(ds),
                      "id": ds[0]["file_id"], "feature": type(ds.features["image"]).__name__}}))
"""


def test_load_dataset_reads_a_snapshot_folder_by_its_card(tmp_path, generated_snapshot):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    shutil.copy(generated_snapshot.path, snaps / generated_snapshot.path.name)
    r = pdd_cli(["snapshot", "card", "--out-dir", str(snaps)], tmp_path)
    assert r.returncode == 0, r.stderr
    name = generated_snapshot.path.stem
    got = stock(LOAD_SNAPSHOT.format(name=name), tmp_path, tmp_path)
    from PIL import Image
    from pdd import snapshot
    first = snapshot.read_table(generated_snapshot.path).slice(0, 1).to_pylist()[0]
    assert got["feature"] == "Image" and got["type"].startswith("PIL.") and got["n"] == 57
    assert got["id"] == first["file_id"]
    import io
    assert got["size"] == list(Image.open(io.BytesIO(first["image"])).size)


def test_a_readme_pdd_did_not_write_is_kept(tmp_path, generated_snapshot):
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    shutil.copy(generated_snapshot.path, snaps / generated_snapshot.path.name)
    (snaps / "README.md").write_text("# my notes\n")
    r = pdd_cli(["snapshot", "card", "--out-dir", str(snaps)], tmp_path)
    assert r.returncode == 2 and "not a snapshot card written by pdd" in r.stderr and len(r.stderr.splitlines()) == 1
    assert (snaps / "README.md").read_text() == "# my notes\n"


def test_the_committed_snapshot_card_is_current():
    """data/snapshots/README.md is what `pdd snapshot card` writes for the committed snapshots."""
    assert snapshot_card.render(REPO / "data/snapshots") == (REPO / "data/snapshots/README.md").read_text(encoding="utf-8")
