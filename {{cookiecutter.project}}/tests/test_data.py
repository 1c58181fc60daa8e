"""Tables in and out, in every format, and the model's input form."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
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


def test_parquet_written_in_chunks_holds_what_pandas_writes(tmp_path: Path) -> None:
    """TableWriter makes its Arrow tables itself (faster than pandas): the same values, NaN null."""
    frame = pd.DataFrame(
        {
            "x": [1.5, np.nan, -0.0],
            "single": np.array([0.25, np.nan, 1], dtype=np.float32),
            "count": [1, 2, 3],
            "plan": [None, None, "b"],  # no text in the first chunk
            "ok": [True, False, True],
            "size": pd.Categorical([0.5, 1.5, 0.5]),  # floats, yet a dictionary in Arrow
            "visits": pd.array([1, None, 2], dtype="Int64"),
        }
    )
    with data.TableWriter(tmp_path / "chunks.parquet") as out:
        out.write(frame.iloc[:2])
        out.write(frame.iloc[2:])
    frame.to_parquet(tmp_path / "whole.parquet", index=False)
    chunks = pq.read_table(tmp_path / "chunks.parquet")
    whole = pq.read_table(tmp_path / "whole.parquet")
    assert chunks.column("x").null_count == 1  # a missing number is missing, not a NaN
    assert chunks.equals(whole)


@pytest.mark.parametrize("writer", ["chunks", "whole"])
def test_parquet_encodes_text_by_dictionary_and_floats_plainly(tmp_path: Path, writer: str) -> None:
    """A dictionary of distinct floats is built to its limit, then dropped: its time is wasted."""
    rows = 5_000
    frame = pd.DataFrame(
        {"x": np.random.default_rng(0).random(rows), "plan": ["a", "b"] * (rows // 2)}
    )
    path = tmp_path / "t.parquet"
    if writer == "chunks":
        with data.TableWriter(path) as out:
            out.write(frame)
    else:
        data.write_table(frame, path)
    group = pq.ParquetFile(path).metadata.row_group(0)
    assert "RLE_DICTIONARY" not in group.column(0).encodings
    assert "RLE_DICTIONARY" in group.column(1).encodings
    assert pq.read_table(path).to_pandas().equals(frame)


def test_parquet_read_in_chunks_holds_a_few_chunks_whatever_its_length(tmp_path: Path) -> None:
    """`make predict`'s memory stays flat: Arrow frees each chunk once it is read past, and reads
    each column chunk a buffer at a time."""
    rng = np.random.default_rng(0)
    rows, chunks = 100_000, 8
    table = pa.table({f"x{i}": rng.random(rows * chunks) for i in range(10)})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=rows)
    chunk_bytes = table.nbytes / chunks
    del table
    held = []
    for chunk in data.read_chunks(tmp_path / "t.parquet", DataParams(target="y"), rows, []):
        held.append(pa.total_allocated_bytes())
        del chunk
    assert len(held) == chunks
    # Less than four chunks' worth of buffers with the one chunk held, whatever the length of the
    # file: the chunk, the pages being decoded, their dictionaries. Reading each column chunk
    # whole (Arrow's default) holds 4.6.
    assert max(held) < 4 * chunk_bytes


def test_a_column_that_changes_type_between_chunks_is_one_line_and_no_file(
    tmp_path: Path,
) -> None:
    """JSON lines may give a column 1 in one row and "one" in a later one; Parquet has one type."""
    (tmp_path / "in.jsonl").write_text('{"x": 1}\n{"x": 2}\n{"x": "one"}\n')

    def copy() -> None:
        with data.TableWriter(tmp_path / "out.parquet") as out:
            for chunk in data.read_chunks(tmp_path / "in.jsonl", DataParams(target="y"), 2, []):
                out.write(chunk)

    with pytest.raises(UserError, match=r"^rows after 2 do not match those before \(x changes"):
        copy()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    (tmp_path / "in.jsonl").write_text('{"x": 1, "y": 1}\n{"x": 2, "y": 2}\n{"x": 3}\n')
    with pytest.raises(UserError, match=r"\(y is missing\)"):
        copy()


def test_unreadable_tables_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="cannot be read as csv"):
        data.read_table(tmp_path / "empty.csv")
    with pytest.raises(UserError, match="unsupported format"):
        data.read_table(tmp_path / "table.xlsx")
    with pytest.raises(UserError, match="unsupported format"):
        data.write_table(pd.DataFrame({"x": [1]}), tmp_path / "table.xlsx")


@pytest.mark.parametrize(
    ("separator", "name"), [(";", "semicolons"), ("\t", "tabs"), ("|", "pipes")]
)
def test_a_table_not_comma_separated_says_what_it_is(
    tmp_path: Path, separator: str, name: str
) -> None:
    path = tmp_path / "raw.csv"
    path.write_text(separator.join(["a", "b", "label"]) + "\n" + separator.join("120") + "\n")
    with pytest.raises(UserError) as error:
        data.read_table(path)
    assert str(error.value) == (
        f"{path}: not comma-separated: its header is separated by {name} ({separator!r}); "
        "save it with commas"
    )
    # One column, no other separator in its header: a table of one column, read as it is.
    path.write_text("label\n1\n")
    assert list(data.read_table(path).columns) == ["label"]


def test_tables_without_rows_or_with_text_for_numbers_are_one_line() -> None:
    params = DataParams(target="label")
    with pytest.raises(UserError, match=r"^the table has a header but no rows: add rows of data$"):
        data.check_usable(pd.DataFrame({"x": [], "label": []}), params)
    typo = pd.DataFrame({"x": ["1.5", "2", "abc", None], "label": ["a", "b", "a", "b"]})
    with pytest.raises(UserError) as error:
        data.check_usable(typo, params)
    assert str(error.value) == (
        "column 'x' is numeric but 1 of its values are not numbers (e.g. 'abc'): fix them, "
        "leave them empty, or run `make schema` if the column is categorical"
    )
    data.check_usable(typo, params.model_copy(update={"categorical": ["x"]}))
    data.check_usable(typo.assign(x=["1.5", "2", "3", None]), params)


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
