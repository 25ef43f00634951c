"""Which source files a stage runs: its module and every `stages` module it imports,
found by reading the imports (so no stage can forget to declare a code dependency)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


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
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "stages":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from stages import images`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "stages")
    return found


def module_closure(module: str) -> list[str]:
    """Repo-relative paths of the module and every `stages` module it imports, transitively."""
    seen: dict[str, Path] = {}
    todo = [module, "stages"]
    while todo:
        mod = todo.pop()
        path = _module_path(mod)
        if path is None or mod in seen:
            continue
        seen[mod] = path
        todo.extend(_imports(path))
        parent = mod.rpartition(".")[0]  # importing a.b.c runs a/__init__ and a/b/__init__ too
        if parent:
            todo.append(parent)
    return sorted({p.relative_to(REPO_ROOT).as_posix() for p in seen.values()})
