"""Tables in and out, in every format, and the model's input form."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import data
from tumor_classifier.cli import UserError
from tumor_classifier.params import DataParams


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_text_columns_keep_their_nulls_in_every_format(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"plan": ["a", None], "label": ["1", "0"], "x": [1.0, None]})
    path = tmp_path / f"folder/t{suffix}"
    data.write_table(frame, path)
    read = data.read_table(path, DataParams(target="label", categorical=["plan"]))
    assert read["plan"].tolist()[0] == "a"
    assert pd.isna(read["plan"].tolist()[1])
    assert read["label"].tolist() == ["1", "0"]
    assert read["x"].tolist()[0] == 1.0


def test_unreadable_tables_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="cannot be read as csv"):
        data.read_table(tmp_path / "empty.csv")
    with pytest.raises(UserError, match="unsupported format"):
        data.read_table(tmp_path / "table.xlsx")
    with pytest.raises(UserError, match="unsupported format"):
        data.write_table(pd.DataFrame({"x": [1]}), tmp_path / "table.xlsx")


@pytest.mark.score("D7")
def test_model_input_makes_numbers_floats_and_missing_categories_empty() -> None:
    frame = pd.DataFrame({"plan": ["a", None, np.nan, 3], "x": ["1", "2", None, 4], "y": [0] * 4})
    x = data.model_input(frame, ["x"], ["plan"])
    assert list(x.columns) == ["x", "plan"]
    assert x["x"].dtype == np.float64
    assert x["plan"].tolist() == ["a", "", "", "3"]
    assert data.text([None, float("nan"), "b", 1]).tolist() == ["", "", "b", "1"]


@pytest.mark.parametrize(
    ("values", "declared", "task"),
    [
        (["yes", "no"] * 30, "auto", "classification"),  # text
        (["True", "False"] * 30, "auto", "classification"),  # booleans, as read from a CSV
        ([0, 1, 2] * 20, "auto", "classification"),  # few distinct numbers
        ([str(i % 20) for i in range(60)], "auto", "classification"),  # 20: still classes
        ([i / 3 for i in range(21)] * 2, "auto", "regression"),  # 21 distinct numbers
        ([str(i * 1.5) for i in range(60)], "auto", "regression"),  # numbers read as text
        ([None, *(i * 1.5 for i in range(60))], "auto", "regression"),  # missing values aside
        ([i * 1.5 for i in range(60)], "classification", "classification"),  # declared wins
        ([0, 1] * 30, "regression", "regression"),
    ],
)
def test_the_task_follows_the_target(values: list[object], declared: str, task: str) -> None:
    params = DataParams(target="y", task=declared)  # type: ignore[arg-type]
    assert data.task_of(pd.Series(values), params) == task
