"""Two `python -m stages.export` at once in one folder (issue 9, "no traceback"): the runner's per-stage lock
(pdd/build/runner.py) makes the second one refuse with one line and exit 2, it touches nothing, and the
output is the bytes a single run writes.

Both processes import everything first and then wait for one signal, so they reach the lock together (a
plain pair of `python -m` would mostly race on import time, and the first could be done before the second
starts). They run the stage exactly as `python -m stages.export` does (runpy, as __main__)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from conftest import engine_env, make_copy, sh
from pdd.core.hashing import hash_dir

HARNESS = """
import os, runpy, sys, time
import pdd.build.runner, pdd.data.export  # noqa: F401,E401  (what stages.export imports, before the start signal)
go = sys.argv[1]
open(sys.argv[2], "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.002)
sys.argv = ["stages/export.py"]
runpy.run_module("stages.export", run_name="__main__", alter_sys=True)
"""


def test_two_exports_at_once_one_refuses_in_one_line(tmp_path, generated_snapshot):
    name = generated_snapshot.info["name"]
    root = make_copy(tmp_path / "r", {"snapshot": {"name": name, "path": f"data/snapshots/{name}.parquet"},
                                      "export": {"resolutions": [16, 32, 64], "val_fraction": 0.2}})
    for src in (generated_snapshot.path, generated_snapshot.path.with_suffix(".json")):
        shutil.copy(src, root / "data" / "snapshots" / src.name)
    sh([sys.executable, "-m", "stages.audit"], root)
    sh([sys.executable, "-m", "stages.curate"], root)
    sh([sys.executable, "-m", "stages.export"], root)
    want = hash_dir(root / "data" / "export")
    manifest = json.loads((root / "data" / "export.manifest.json").read_text())
    assert manifest["output"]["sha256"] == want

    refused = 0
    for attempt in range(3):   # (both can only succeed if one finished before the other reached the lock)
        go = tmp_path / f"go-{attempt}"
        ready = [tmp_path / f"ready-{attempt}-{i}" for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", HARNESS, str(go), str(r)], cwd=root, env=engine_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        go.touch()
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        for rc, _out, err in results:
            assert "Traceback" not in err, err
            assert rc in (0, 2), (rc, err)
            if rc == 2:
                assert len(err.strip().splitlines()) == 1, err
                assert err.startswith("pdd: error: stage export is already running in this folder"), err
        assert 0 in [rc for rc, _o, _e in results]
        refused += sum(rc == 2 for rc, _o, _e in results)
        # the output is a single run's bytes, its manifest describes it, and no temp or old folder is left
        assert hash_dir(root / "data" / "export") == want
        assert json.loads((root / "data" / "export.manifest.json").read_text())["output"]["sha256"] == want
        assert not [p.name for p in (root / "data").iterdir() if p.name.startswith(".export.")]
        if refused:
            break
    assert refused == 1
