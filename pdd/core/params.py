"""Load and validate params.yaml: the single source of every knob and of the seed.

The schema lives in workflow/schemas/params.schema.yaml and is also what the
Snakefile validates its config against, so both engines and `pdd` agree on it. It is
generated from the declarations in pdd/core/config.py (`python -m pdd.core.config --write`).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
import jsonschema
import yaml
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.events import AliasEvent

from pdd.core.errors import PddError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = Path("params.yaml")


class _NoAliasComposer(Composer):
    """Refuses what params.yaml never needs and a hostile file abuses: aliases (an alias bomb expands
    exponentially when validated)."""

    def compose_node(self, parent, index):
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise ComposerError(None, None, f"alias *{event.anchor} refused: params.yaml allows no aliases, write the "
                                "value out", event.start_mark)
        return super().compose_node(parent, index)


class _StrictConstructor(SafeConstructor):
    """Repeated keys are refused (in YAML 1.1 readers the last silently won)."""

    def check_mapping_key(self, node, key_node, mapping, key, value):
        if key in mapping:
            raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return True


def _reader() -> YAML:
    """YAML 1.2 (ruamel.yaml, pure Python, safe): what DVC itself reads and writes. `dvc exp run -S` rewrites
    params.yaml without the quotes around strings like "no", which YAML 1.1 readers (PyYAML) turn into False."""
    reader = YAML(typ="safe", pure=True)
    reader.Composer = _NoAliasComposer
    reader.Constructor = _StrictConstructor
    return reader


def parse(text: str, source: str | Path = "params.yaml"):
    """params YAML text -> plain data, read as YAML 1.2 (bare no/yes/on/off stay strings, 1e-6 is a number),
    without aliases or repeated keys; a YAML error is one line naming the file and line."""
    try:
        return _reader().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PddError(f"{source}:{where} is not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def read(path: str | Path = DEFAULT_PARAMS):
    """A params file's data, unvalidated (see `parse`); a missing file or non-UTF-8 bytes are one line."""
    path = Path(path)
    if not path.is_file():
        raise PddError(f"{path}: params file not found (run from the repository root or pass --params PATH)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PddError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 4]!r}); save it as UTF-8") from None
    return parse(text, path)


def _non_finite(data, path=()):
    """(key, value) of the first NaN or infinite number in a parsed params tree, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return ".".join(map(str, path)) or "(top level)", data
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, (*path, k))
        if found:
            return found
    return None


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _key_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        # name the offending key itself, not its parent
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return ".".join(filter(None, [path, missing]))
    return path or "(top level)"


def validate(params: dict, source: str | Path = "params.yaml") -> dict:
    """Validate a params mapping; raise PddError naming the key and the file."""
    bad = _non_finite(params)
    if bad:  # NaN passes every minimum/maximum of the schema (all comparisons are false)
        raise PddError(f"{source}: {bad[0]}: {bad[1]} is not a finite number")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        err = errors[0]
        key = _key_of(err)
        if err.validator == "additionalProperties":
            why = "unknown key (check its spelling; see workflow/schemas/params.schema.yaml)"
        elif err.validator == "required":
            why = "missing required key"
        else:
            why = err.message
        raise PddError(f"{source}: {key}: {why}")
    return params


def load(path: str | Path = DEFAULT_PARAMS) -> dict:
    """Read (YAML 1.2, as DVC writes it) and validate params.yaml. Errors are one line: file, key, what is wrong."""
    path = Path(path)
    params = read(path)
    if not isinstance(params, dict):
        raise PddError(f"{path}: expected a mapping of sections at the top level")
    return validate(params, path)


def section(params: dict, name: str) -> dict:
    """A stage's own section plus the global seed: what its manifest records."""
    out = copy.deepcopy(params.get(name, {}))
    return {"seed": params["seed"], name: out}
