"""params.yaml is validated at load time; every error is one line naming the file and the key."""
import pytest
import yaml

from pdd.core import params as params_mod
from pdd.core.errors import PddError
from conftest import REPO


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def base() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_are_valid():
    assert params_mod.load(REPO / "params.yaml")["seed"] >= 0


def test_unknown_key_is_named(tmp_path):
    p = base()
    p["export"]["resolutoins"] = [64]
    with pytest.raises(PddError) as err:
        params_mod.load(write(tmp_path, p))
    msg = str(err.value)
    assert "export.resolutoins" in msg and "params.yaml" in msg and "unknown key" in msg and "\n" not in msg


def test_unknown_section_is_named(tmp_path):
    p = base()
    p["exprot"] = {}
    with pytest.raises(PddError, match=r"params.yaml: exprot: unknown key"):
        params_mod.load(write(tmp_path, p))


def test_wrong_type_is_named(tmp_path):
    p = base()
    p["export"]["val_fraction"] = "ten percent"
    with pytest.raises(PddError, match=r"export\.val_fraction: 'ten percent' is not of type 'number'"):
        params_mod.load(write(tmp_path, p))


def test_missing_key_is_named(tmp_path):
    p = base()
    del p["seed"]
    with pytest.raises(PddError, match=r"seed: missing required key"):
        params_mod.load(write(tmp_path, p))


def test_missing_file(tmp_path):
    with pytest.raises(PddError, match=r"nope\.yaml: params file not found"):
        params_mod.load(tmp_path / "nope.yaml")


def test_bad_yaml(tmp_path):
    with pytest.raises(PddError, match=r"line \d+ is not valid YAML"):
        params_mod.load(write(tmp_path, "seed: [1,\n"))
