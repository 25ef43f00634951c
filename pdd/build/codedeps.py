"""Which source files can change a stage's bytes: its module and every `stages`/`pdd` module it imports,
found by reading the imports (so no stage can forget to declare a code dependency).

Bookkeeping modules are left out (and not followed): the runner, manifests and provenance statements, the
registry and its renderers, params loading and typed configs, reports, the CLI, error messages and the version. They
decide where things go and how they are recorded, never what a stage computes, so editing them must
not retrain a model (like Bazel's volatile stamping: recorded, never a reason to rebuild). Package
`__init__.py` files are left out too; a test keeps them free of code. The manifest still records the
sha256 of every file that ran (`ran_files`), bookkeeping included.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stages", "pdd")
BOOKKEEPING = frozenset({
    "pdd.build.runner", "pdd.build.manifest", "pdd.build.provenance", "pdd.build.codedeps", "pdd.build.dag", "pdd.build.report",
    "pdd.core.params", "pdd.core.config", "pdd.build.cluster", "pdd.cli", "pdd.core.errors", "pdd.core.version",
})


def _module_path(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for cand in (REPO_ROOT / rel.with_suffix(".py"), REPO_ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pdd.core import images`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
    return found


def _walk(module: str, follow_bookkeeping: bool) -> dict[str, Path]:
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        mod = todo.pop()
        path = _module_path(mod)
        if path is None or mod in seen:
            continue
        seen[mod] = path
        if mod in BOOKKEEPING and not follow_bookkeeping:
            continue
        todo.extend(_imports(path))
        parent = mod.rpartition(".")[0]  # importing a.b.c runs a/__init__ and a/b/__init__ too
        if parent:
            todo.append(parent)
    return seen


def _rel(paths) -> list[str]:
    return sorted({p.relative_to(REPO_ROOT).as_posix() for p in paths})


def module_closure(module: str) -> list[str]:
    """Repo-relative paths of the code that can change the stage's bytes (its build dependencies)."""
    seen = _walk(module, follow_bookkeeping=False)
    return _rel(p for m, p in seen.items() if m not in BOOKKEEPING and p.name != "__init__.py")


def ran_files(module: str) -> list[str]:
    """Every project file the stage's process imports, bookkeeping included (recorded in the manifest)."""
    return _rel(_walk(module, follow_bookkeeping=True).values())


def full_closure(module: str) -> list[str]:
    """Module names the stage reaches through any import, for the layering test."""
    return sorted(_walk(module, follow_bookkeeping=True))
