"""The import graph has floors, and this test keeps them (as test_dag.py keeps the pure/mutable line):

- the ground, `pdd.core` (errors, hashing, determinism, params and typed configs, the shard and image
  formats, the version), imports nothing of the project outside itself;
- the engine, `pdd.build` (runner, registry/dag, cluster, manifests, verify, reports), may import anything,
  and only the stages, the CLI and the engine itself import it;
- a stage imports no other stage: what two stages share lives in the library.

Every import counts, also one inside a function.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROUND = "pdd.core"
ENGINE = "pdd.build"
MAY_IMPORT_ENGINE = ("pdd.build", "pdd.cli", "stages")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_imports(path: Path) -> set[str]:
    """Project modules (pdd.*, stages.*) that a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ("pdd", "stages"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names
                             if (REPO / node.module.replace(".", "/") / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("pdd", "stages"))
    return found


def _within(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def layer_problems(files: dict[str, set[str]]) -> list[str]:
    """{module: imported modules} -> one line per import that crosses a floor the wrong way."""
    problems = []
    for mod, imports in sorted(files.items()):
        for imp in sorted(imports):
            if _within(mod, GROUND) and not _within(imp, GROUND) and imp not in ("pdd",):
                problems.append(f"{mod} (ground) imports {imp}")
            if _within(imp, ENGINE) and not any(_within(mod, p) for p in MAY_IMPORT_ENGINE):
                problems.append(f"{mod} imports the engine ({imp})")
            if _within(mod, "stages") and _within(imp, "stages") and imp != "stages":
                problems.append(f"stage {mod} imports stage {imp}")
    return problems


def project_graph() -> dict[str, set[str]]:
    files = list((REPO / "pdd").rglob("*.py")) + list((REPO / "stages").glob("*.py"))
    return {_module_name(p): project_imports(p) for p in files}


def test_floors_hold():
    assert layer_problems(project_graph()) == []


@pytest.mark.parametrize("module, planted, expect", [
    ("pdd.core.hashing", "pdd.train.loop", "(ground) imports pdd.train.loop"),
    ("pdd.core.config", "pdd.build.cluster", "(ground) imports pdd.build.cluster"),
    ("pdd.source.store", "pdd.build.runner", "imports the engine"),
    ("pdd.train.vae", "pdd.build.dag", "imports the engine"),
    ("stages.pipeline", "stages.sample", "imports stage stages.sample"),
])
def test_a_planted_violation_is_caught(module, planted, expect):
    graph = project_graph()
    graph[module] = graph[module] | {planted}
    problems = layer_problems(graph)
    assert any(module in p and expect in p for p in problems), problems


def test_ground_modules_are_where_the_docs_say():
    names = {p.stem for p in (REPO / "pdd" / "core").glob("*.py")}
    assert {"errors", "hashing", "determinism", "params", "config", "shards", "images", "version"} <= names
