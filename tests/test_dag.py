"""One DAG, two engines: dvc.yaml and the Snakefile are generated from pdd/build/dag.py,
and DVC's and Snakemake's own views of them agree on every stage's command, inputs and outputs."""
import re

import yaml

from pdd.build import dag
from pathlib import Path

from pdd.build.codedeps import full_closure, module_closure, ran_files
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
    assert {"stages/export.py", "pdd/data/export.py", "pdd/core/images.py", "pdd/core/shards.py", "pdd/snapshot.py"} <= set(deps)
    # bookkeeping is recorded, never a build input
    for book in ("pdd/build/manifest.py", "pdd/build/provenance.py", "pdd/build/runner.py", "pdd/build/dag.py", "pdd/cli.py",
                 "pdd/core/version.py", "pdd/core/errors.py", "pdd/core/params.py", "pdd/core/config.py", "pdd/__init__.py"):
        assert book not in deps
    assert "pdd/build/runner.py" in ran_files("stages.export")   # ... but the manifest hashes it
    for s in dag.PIPELINE:
        assert f"{s.module.replace('.', '/')}.py" in s.code_deps


# ---- the line between the mutable side and the pure build --------------------------------------
MUTABLE = ("pdd.source",)                     # store, importers, scrapers, mirror, pinning
NETWORK = {"requests", "urllib3", "http", "socket", "urllib.request", "http.client", "http.server", "duckdb",
           "dvc.api", "huggingface_hub"}
# huggingface_hub's card classes render and save README.md files locally (dataset and model cards); every other
# part of huggingface_hub (downloads, the Hub API) is network
OFFLINE_HF = {"huggingface_hub.repocard", "huggingface_hub.repocard_data"}


def _third_party_imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layering_problems(module: str) -> list[str]:
    problems = []
    for mod in full_closure(module):
        if mod.startswith(MUTABLE):
            problems.append(f"{module} reaches {mod}")
        path = REPO / (mod.replace(".", "/") + ".py")
        if not path.exists():
            path = REPO / mod.replace(".", "/") / "__init__.py"
        if mod in ("pdd.cli",):
            problems.append(f"{module} reaches the CLI")
        for imp in _third_party_imports(path):
            if (imp in NETWORK or imp.split(".")[0] in {"requests", "urllib3", "duckdb", "socket"}
                    or (imp.split(".")[0] == "huggingface_hub" and imp not in OFFLINE_HF)):
                problems.append(f"{module} -> {mod} imports {imp}")
    return problems


def test_no_stage_reaches_the_store_the_scraper_or_the_network():
    for s in dag.PIPELINE:
        assert layering_problems(s.module) == [], s.name


def test_layering_test_can_fail(tmp_path, monkeypatch):
    """A stage that imported the store would be caught."""
    from pdd.build import codedeps

    real = codedeps._imports
    monkeypatch.setattr(codedeps, "_imports",
                        lambda path: real(path) | ({"pdd.source.store"} if path.name == "export.py" else set()))
    assert any("pdd.source.store" in p for p in layering_problems("stages.export"))


def test_package_init_files_hold_no_code():
    """__init__.py files are left out of code deps, so they must not be able to change a byte."""
    import ast

    for init in list((REPO / "pdd").rglob("__init__.py")) + [REPO / "stages/__init__.py"]:
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init
