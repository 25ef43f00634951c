"""One DAG, two engines: dvc.yaml and the Snakefile are generated from stages/dag.py,
and DVC's and Snakemake's own views of them agree on every stage's command, inputs and outputs."""
import re

import yaml

from pdd.build import dag
from pdd.build.codedeps import module_closure
from conftest import REPO, make_copy, sh


def test_generated_files_are_up_to_date():
    for rel, text in dag.rendered_files().items():
        assert (REPO / rel).read_text() == text, f"{rel} is stale: run `pdd dag write`"


def dvc_view(root) -> dict:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: {"cmd": s.cmd, "deps": sorted(str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)),
                         "outs": sorted(str(o.def_path) for o in s.outs)} for s in repo.index.stages}


def dvc_params(root) -> dict:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: sorted(k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params) for s in repo.index.stages}


def snakemake_view(root) -> dict:
    """Parse Snakemake's own dry run (-n -p --forceall): rule blocks with input/output and the shell command."""
    out = sh(["snakemake", "-n", "-p", "--forceall", "-c1", "--quiet", "rules"], root, check=False)
    if "input:" not in out.stdout:
        out = sh(["snakemake", "-n", "-p", "--forceall", "-c1"], root)
    view = {}
    for block in re.split(r"\n(?=rule \w+:)", out.stdout):
        m = re.match(r"rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^\s+(input|output|log): (.*)$", block, re.M))
        shell = re.search(r"^Shell command: (.*)$", block, re.M) or re.search(r"^\s*(python -m .*)$", block, re.M)
        view[m.group(1)] = {
            "cmd": re.sub(r"\s*2>\s*\S+$", "", shell.group(1).strip()),  # Snakemake adds only the log redirect
            "deps": sorted(fields.get("input", "").split(", ")),
            "outs": sorted(fields.get("output", "").split(", ")),
        }
    return view


def test_dvc_and_snakemake_agree_with_the_registry(tmp_path):
    root = make_copy(tmp_path / "r")
    params = yaml.safe_load((root / "params.yaml").read_text())
    want = dag.resolved(params)
    assert dvc_view(root) == want
    assert snakemake_view(root) == want
    # both engines rerun a stage when a params section it reads changes
    assert dvc_params(root) == {s.name: sorted(["seed", *s.params]) for s in dag.PIPELINE}
    for s in dag.PIPELINE:
        rule = (root / f"workflow/rules/{s.name}.smk").read_text()
        assert all(f'{p}=config["{p}"]' in rule for p in ["seed", *s.params])


def test_registry_change_is_caught(tmp_path):
    """The agreement test can fail: a hand edit to dvc.yaml shows up as a difference."""
    root = make_copy(tmp_path / "r")
    text = (root / "dvc.yaml").read_text().replace("cmd: python -m stages.export", "cmd: python -m stages.export --fast")
    (root / "dvc.yaml").write_text(text)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert dvc_view(root)["export"]["cmd"] != dag.resolved(params)["export"]["cmd"]


def test_code_deps_follow_imports():
    deps = module_closure("stages.export")
    assert {"stages/export.py", "stages/images.py", "stages/shards.py", "stages/snapshot.py", "stages/manifest.py"} <= set(deps)
    assert "stages/cli.py" not in deps and "stages/dag.py" not in deps
    for s in dag.PIPELINE:
        assert f"{s.module.replace('.', '/')}.py" in s.code_deps
