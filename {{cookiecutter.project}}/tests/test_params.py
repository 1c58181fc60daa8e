"""params.yaml: the shipped file loads, and a mistake in it is one line naming the key."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.params import flatten, load, parse_yaml

from conftest import ROOT


def test_shipped_params_load_completely() -> None:
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert load(ROOT / "params.yaml").model_dump(by_alias=True) == shipped


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["split"].update(test_size=2), "split.test_size: Input should be less than 1"),
        (
            lambda p: p["train"]["search"].update(kind="bayes"),
            "train.search.kind: Input should be 'grid' or 'random'",
        ),
        (lambda p: p["gate"].update(treshold=1), "gate.treshold: Extra inputs are not permitted"),
        (lambda p: p.pop("data"), "data: Field required"),
    ],
)
def test_mistakes_name_the_key(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError) as error:
        load(path)
    assert str(error.value) == f"{path}: {message}"


def test_broken_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load(path)


def test_yaml_is_loaded_safely_and_as_pyyaml_loads_it() -> None:
    """libyaml's loader, where there is one, reads params.yaml as the pure-Python one does, and
    builds no Python object a document names."""
    text = (ROOT / "params.yaml").read_text()
    assert parse_yaml(text) == yaml.safe_load(text)
    with pytest.raises(yaml.constructor.ConstructorError):
        parse_yaml("!!python/object/apply:os.getcwd []")


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [2], "e": {}}
