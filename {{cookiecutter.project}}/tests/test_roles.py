"""`make schema`'s roles: each kind of column gets its role from the values alone, each rule has a
boundary a column just past it does not cross, and params.yaml changes in two values only."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import roles
from tumor_classifier.cli import UserError
from tumor_classifier.data import read_table
from tumor_classifier.params import DataParams, load
from tumor_classifier.pipeline import validate

from conftest import ROOT

N = 40


@pytest.mark.parametrize(
    ("values", "role", "why"),
    [
        (np.linspace(0, 1, N), "numeric", "numbers"),
        ([True, False] * (N // 2), "categorical", "boolean"),
        (["True", "False", None] * 13 + ["True"], "categorical", "boolean"),
        (list(range(10)) * 4, "categorical", "integer codes: 10 values"),
        (list(range(11)) * 3 + list(range(7)), "numeric", "numbers"),  # one value past the limit
        (list(range(1000, 1000 + N)), "drop", "identifier"),
        ([f"user-{i}" for i in range(N)], "drop", "identifier"),
        ([f"user-{i % 30}" for i in range(N)], "categorical", "text"),  # 75% distinct: not an id
        ([f"2024-01-{d:02d}" for d in range(1, 29)] * 2, "drop", "date"),
        (["red", "green", "blue", "red"] * 10, "categorical", "text: 3 values"),
        ([7] * N, "drop", "constant"),
        ([None] * N, "drop", "empty"),
    ],
)
def test_each_kind_of_column_gets_its_role(values: list[object], role: str, why: str) -> None:
    decision = roles.decide("x", pd.Series(values))
    assert (decision.role, decision.why.startswith(why)) == (role, True), decision


def test_few_rows_prove_no_identifier() -> None:
    few = roles.decide("x", pd.Series([f"user-{i}" for i in range(roles.IDENTIFIER_MIN_ROWS - 1)]))
    assert few.role == "categorical"


def test_mostly_missing_columns_are_flagged_and_keep_their_role() -> None:
    values = pd.Series([1.5, 2.5, 3.5, 4.5] * 4 + [None] * 21)
    flagged = roles.decide("x", values)
    assert (flagged.role, flagged.flag) == ("numeric", "57% missing")
    assert roles.decide("x", values.iloc[:30]).flag == ""  # 47% missing: no flag
    assert "review: 57% missing" in roles.table([flagged])


def test_text_in_a_numeric_column_is_one_line() -> None:
    values = pd.Series(["1.5", "2", "n.a.", *[str(i) for i in range(30)]])
    with pytest.raises(UserError) as error:
        roles.decide("dose", values)
    assert str(error.value) == (
        "column 'dose' is numeric but 1 of its values are not numbers (e.g. 'n.a.'): "
        "fix them in the data, or leave them empty"
    )
    # Mostly text is a category, not a typo.
    assert roles.decide("dose", pd.Series(["low", "high", "1", "2"] * 10)).role == "categorical"


def test_target_must_be_a_column_and_the_table_have_rows() -> None:
    with pytest.raises(UserError, match=r"data\.target 'label' is not a column.*one of a, b"):
        roles.decide_all(pd.DataFrame({"a": [1], "b": [2]}), DataParams(target="label"))
    with pytest.raises(UserError, match="header but no rows"):
        roles.decide_all(pd.DataFrame({"a": [], "label": []}), DataParams(target="label"))


def test_params_decisions_stay() -> None:
    frame = pd.DataFrame({"score": np.linspace(0, 1, N), "n": np.arange(N) % 20, "y": [0, 1] * 20})
    data = DataParams(target="y", categorical=["n"], drop=["score"])
    decisions = {d.column: d.role for d in roles.decide_all(frame, data)}
    assert decisions == {"score": "drop", "n": "categorical", "y": "target"}
    assert {d.column: d.role for d in roles.decide_all(frame, DataParams(target="y"))} == {
        "score": "numeric",
        "n": "numeric",
        "y": "target",
    }


def test_params_change_in_the_two_values_only(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text().splitlines()
    data = DataParams(target="diagnosis", categorical=["a b", "yes"], drop=["id"])
    roles.write_data_params(path, data)
    after = path.read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert changed == [
        (
            "  categorical: []              # one-hot encoded; every other column, except `drop`, "
            "is numeric",
            "  categorical: [a b, 'yes']    # one-hot encoded; every other column, except `drop`, "
            "is numeric",
        ),
        (
            "  drop: []                     # identifiers, dates, constants and leaks: never "
            "features",
            "  drop: [id]                   # identifiers, dates, constants and leaks: never "
            "features",
        ),
    ]
    loaded = load(path).data
    assert (loaded.categorical, loaded.drop) == (["a b", "yes"], ["id"])  # 'yes' stays text


def test_lists_written_one_item_per_line_are_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  target: y\n  categorical:\n  - a\n  - b\n  drop:\n  - c\nsplit: {}\n")
    roles.write_data_params(path, DataParams(target="y", categorical=["b"], drop=[]))
    assert path.read_text() == "data:\n  target: y\n  categorical: [b]\n  drop: []\nsplit: {}\n"


def test_make_schema_writes_schema_and_params(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(100)],
            "plan": rng.choice(["basic", "pro"], 100),
            "active": rng.choice([True, False], 100),
            "signup": pd.date_range("2024-01-01", periods=100).strftime("%Y-%m-%d"),
            "spend": rng.normal(50, 10, 100),
            "country": ["fr"] * 100,
            "diagnosis": rng.choice(["x", "y"], 100),
        }
    )
    frame.to_csv("raw.csv", index=False)
    validate.main(["infer", "raw.csv", "schema.yaml"])
    data = load().data
    assert (data.categorical, data.drop) == (["plan", "active"], ["id", "signup", "country"])
    schema = validate.load_schema(Path("schema.yaml"))
    assert schema.columns["active"].checks[0].statistics["allowed_values"] == ["False", "True"]
    out = capsys.readouterr().out
    assert "signup     drop         date" in out
    assert "wrote schema.yaml and data.categorical/drop in params.yaml" in out
    # What make schema wrote, the validate stage accepts.
    validated = validate.check(read_table(Path("raw.csv"), data), schema, data, load().validate_)
    assert len(validated) == 100
