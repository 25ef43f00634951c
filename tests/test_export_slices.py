"""Export scattered over jobs (issue 14): N slices each write whole shards, one gather assembles them, and the
result is byte-identical to one export job, in the library and through Snakemake (resources.rules.export.slices)."""
from __future__ import annotations

import shutil
import sys

import pytest

from conftest import make_copy, sh
from pdd.core import config
from pdd.core.hashing import hash_dir
from pdd.data import export
from pdd.core.errors import PddError

CFG = config.ExportCfg(resolutions=(16,), resample="lanczos", fit="pad", background=(255, 255, 255), val_fraction=0.2,
                       caption=config.CaptionCfg("{title}", ("pd", "cc0"), "an image"), shard_rows=8, threads=2)


@pytest.fixture(scope="module")
def one_job(tmp_path_factory, generated_snapshot):
    out = tmp_path_factory.mktemp("one") / "export"
    index = export.export(generated_snapshot.path, out, CFG, seed=3)
    assert len(index["shards"]["train"]) > 3 and len(index["shards"]["val"]) > 1   # several shards per split
    return out


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 12])
def test_slices_gather_to_the_bytes_of_one_job(tmp_path, generated_snapshot, one_job, parts):
    dirs = [tmp_path / "slices" / str(i) for i in range(parts)]
    rows = sum(export.export_slice(generated_snapshot.path, d, CFG, 3, i, parts)["rows"] for i, d in enumerate(dirs))
    assert rows == 57
    export.gather(dirs, tmp_path / "export", generated_snapshot.path, CFG, 3)
    assert hash_dir(tmp_path / "export") == hash_dir(one_job)


def test_gather_refuses_missing_or_foreign_slices(tmp_path, generated_snapshot):
    dirs = [tmp_path / str(i) for i in range(3)]
    for i, d in enumerate(dirs[:2]):
        export.export_slice(generated_snapshot.path, d, CFG, 3, i, 3)
    with pytest.raises(PddError, match=r"slice 2/3 was not exported; run the 3 export slices again"):
        export.gather(dirs, tmp_path / "out", generated_snapshot.path, CFG, 3)
    export.export_slice(generated_snapshot.path, dirs[2], CFG, 4, 2, 3)          # another seed
    with pytest.raises(PddError, match=r"made from another snapshot, params, seed or slice count"):
        export.gather(dirs, tmp_path / "out", generated_snapshot.path, CFG, 3)
    with pytest.raises(PddError, match=r"made from another snapshot, params, seed or slice count"):
        export.gather(dirs[:2], tmp_path / "out", generated_snapshot.path, CFG, 3)   # made as 2 of 3, not of 2
    assert not (tmp_path / "out").exists()


def test_snakemake_scatters_export_over_jobs_and_gets_one_jobs_bytes(tmp_path, generated_snapshot):
    name = generated_snapshot.info["name"]
    change = {"snapshot": {"name": name, "path": f"data/snapshots/{name}.parquet"},
              "export": {"resolutions": [16], "val_fraction": 0.2, "shard_rows": 8}}
    one = make_copy(tmp_path / "one", change)
    many = make_copy(tmp_path / "many", {**change, "resources": {"rules": {"export": {"slices": 3}}}})
    for root in (one, many):
        for src in (generated_snapshot.path, generated_snapshot.path.with_suffix(".json")):
            shutil.copy(src, root / "data" / "snapshots" / src.name)
    sh([sys.executable, "-m", "stages.audit"], one)
    sh([sys.executable, "-m", "stages.curate"], one)
    sh([sys.executable, "-m", "stages.export"], one)
    dry = sh(["snakemake", "-n", "-p", "data/export"], many).stdout
    assert dry.count("rule export_slice:") == 3 and "python -m stages.export --gather 3" in dry
    assert "python -m stages.export --slice 2/3" in dry
    sh(["snakemake", "-c2", "data/export"], many)
    assert hash_dir(many / "data" / "export") == hash_dir(one / "data" / "export")
    assert not (many / "data" / "export-slices").exists() or not any((many / "data" / "export-slices").iterdir())
    assert (many / "data" / "export.manifest.json").exists() and (many / "logs" / "export-slice-0.log").exists()
