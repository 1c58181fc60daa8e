"""Tables in and out (CSV, Parquet, JSON lines), whole or in chunks; the role of each column; the
model's input."""

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pandas as pd

from .cli import UserError
from .params import DataParams, Task

READERS = (".csv", ".parquet", ".jsonl")
MAX_CLASSES = 20  # data.task auto: a numeric target with more distinct values is a regression


def read_table(path: Path, data: DataParams | None = None) -> pd.DataFrame:
    """Read a table by its suffix; categorical columns and the target are read as text."""
    if path.suffix not in READERS:
        raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    text_columns = [*data.categorical, data.target] if data else []
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
            if frame.shape[1] == 1:
                check_separator(path)
            return frame
        frame = (
            pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
        )
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: cannot be read as {path.suffix[1:]} ({error})") from None
    return as_text(frame, text_columns)


# Separators a spreadsheet or a database export may have used instead of commas.
SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


def check_separator(path: Path) -> None:
    """A CSV read as one column may be separated by something else: say by what."""
    with path.open() as file:
        header = file.readline()
    found = max(SEPARATORS, key=header.count)
    if header.count(found):
        raise UserError(
            f"{path}: not comma-separated: its header is separated by {SEPARATORS[found]} "
            f"({found!r}); save it with commas"
        )


def not_numbers(values: pd.Series) -> pd.Series:
    """The values of a column that are present but are not numbers."""
    if pd.api.types.is_numeric_dtype(values):
        return values.iloc[:0]
    present = values.dropna()
    return present[pd.to_numeric(present, errors="coerce").isna()]


def check_usable(frame: pd.DataFrame, data: DataParams) -> None:
    """Rows, and numbers in every numeric feature: what every stage after this one assumes."""
    if frame.empty:
        raise UserError("the table has a header but no rows: add rows of data")
    numeric, _ = feature_columns(list(frame.columns), data)
    for column in numeric:
        bad = not_numbers(frame[column])
        if len(bad):
            raise UserError(
                f"column {column!r} is numeric but {len(bad)} of its values are not numbers "
                f"(e.g. {bad.iloc[0]!r}): fix them, leave them empty, or run `make schema` "
                "if the column is categorical"
            )


def as_text(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """These columns as text, with nulls kept as nulls (astype(str) alone would write "None")."""
    for column in set(columns) & set(frame.columns):
        values = frame[column]
        frame[column] = values.where(values.isna(), values.astype(str))
    return frame


# JSON lines as written: JSON's own types, no guessing that "000" is a number or that a column
# named like a date holds dates.
JSON_AS_WRITTEN = {"dtype": False, "convert_dates": False}


def text_but(csv: Any, numbers: Collection[str]) -> dict[str, type[str]]:
    """The dtypes that read a CSV's columns as text as written (an id keeps its leading zeros, a
    column empty in the first chunks has one type in all of them), but for `numbers`."""
    return {str(c): str for c in pd.read_csv(csv, nrows=0).columns if c not in numbers}


def read_chunks(
    path: Path, data: DataParams, rows: int, numbers: Collection[str]
) -> Iterator[pd.DataFrame]:
    """The table `rows` rows at a time, memory flat: the `numbers` columns as numbers, and the
    others as the file has them (a CSV's as text, JSON's as JSON types them)."""
    if path.suffix not in READERS:
        raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    text_columns = [*data.categorical, data.target]
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # the pipeline's dependency, never the service's

            # Each column a block of its own: no copy into pandas' 2-D blocks. The numbers stay in
            # Arrow's buffers, read-only: predictions go beside them, never into them. Pre-buffering
            # keeps every row group read so far: memory would grow with the file (arrow#39808).
            # One thread: a chunk decodes faster than it predicts, and Arrow's pool of decoding
            # threads took cores from the model (make predict 10% slower on 2 cores). Each column
            # chunk is read 64 KiB at a time, not whole: 48 MiB less at the peak, as fast.
            table = pq.ParquetFile(path, pre_buffer=False, buffer_size=64 << 10)
            batches = table.iter_batches(rows, use_threads=False)
            chunks: Any = (b.to_pandas(split_blocks=True) for b in batches)
        elif path.suffix == ".csv":
            chunks = pd.read_csv(path, dtype=text_but(path, numbers), chunksize=rows)
        else:
            chunks = pd.read_json(path, lines=True, chunksize=rows, **JSON_AS_WRITTEN)
        for chunk in chunks:
            yield as_text(chunk, text_columns)
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: cannot be read as {path.suffix[1:]} ({error})") from None


def arrow_table(frame: pd.DataFrame) -> Any:
    """The frame as pa.Table.from_pandas makes it (NaN as null), faster: a float column without
    NaN, found by numpy in one pass, is taken as it is, with no validity bitmap to build (that
    bitmap is 90% of the conversion of a million rows of 30 floats: 0.57 s against 0.04). A
    categorical column is written as its values: read back as text, as from a CSV, not as a
    pandas category."""
    import pyarrow as pa

    columns = {}
    for name, column in frame.items():
        # Plain numpy floats only: a nullable column keeps pandas' conversion.
        if isinstance(column.dtype, np.dtype) and column.dtype.kind == "f":
            values = column.to_numpy()
            columns[str(name)] = pa.array(values, from_pandas=bool(np.isnan(values).any()))
        elif isinstance(column.dtype, pd.CategoricalDtype):
            columns[str(name)] = pa.Array.from_pandas(column).dictionary_decode()
        else:
            columns[str(name)] = pa.Array.from_pandas(column)
    return pa.table(columns)


class TableWriter:
    """Writes a table chunk by chunk into a temporary file, which becomes `path` only when the
    writer closes without an error: a failed run leaves no file, nor half of one."""

    def __init__(self, path: Path) -> None:
        if path.suffix not in READERS:
            raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.parquet: Any = None
        self.rows = 0

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = arrow_table(frame)
            if self.parquet is None:
                # A column of nulls only in the first chunk would be typed null: text holds both.
                schema = pa.schema(
                    f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                    for f in table.schema
                )
                self.parquet = pq.ParquetWriter(
                    self.partial, schema, use_dictionary=dictionary_columns(frame)
                )
            self.parquet.write_table(self.conformed(table))
        elif self.path.suffix == ".csv":
            mode = "a" if self.rows else "w"
            frame.to_csv(self.partial, index=False, header=not self.rows, mode=mode)
        else:
            with self.partial.open("a" if self.rows else "w") as out:
                frame.to_json(out, orient="records", lines=True, date_format="iso")
        self.rows += len(frame)

    def conformed(self, table: Any) -> Any:
        """The chunk in the file's schema, the first chunk's; or one line naming the columns whose
        values changed type, as JSON lines may (1 in one row, "one" in a later one)."""
        import pyarrow as pa

        schema = self.parquet.schema
        try:
            return table.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
            first = {f.name: f.type for f in schema}
            problems = [
                f"{f.name} appears" if f.name not in first else f"{f.name} changes type"
                for f in table.schema
                if first.get(f.name) != f.type
            ] + [f"{name} is missing" for name in first if name not in table.schema.names]
            raise UserError(
                f"rows after {self.rows:,} do not match those before ({', '.join(problems)}): "
                "give each column one type, or write the output as CSV"
            ) from None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if kind is None and self.partial.exists():
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)


def dictionary_columns(frame: pd.DataFrame) -> list[str]:
    """The columns Parquet should dictionary-encode: all but floats. Measured floats are nearly all
    distinct, so their dictionary grows to its limit and is thrown away: 7x the writing time of a
    million rows of 30 floats (4.4 s against 0.6), for a file no smaller."""
    return [str(name) for name, dtype in frame.dtypes.items() if getattr(dtype, "kind", "") != "f"]


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a table in the format its suffix names, as read_table reads it back."""
    if path.suffix not in READERS:
        raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False, use_dictionary=dictionary_columns(frame))
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")


def feature_columns(columns: list[str], data: DataParams) -> tuple[list[str], list[str]]:
    """Split the feature columns into (numeric, categorical), in table order."""
    declared = {data.target, *data.categorical, *data.drop}
    missing = sorted(declared - set(columns))
    if missing:
        raise UserError(f"params.yaml data names columns the table lacks: {', '.join(missing)}")
    features = [c for c in columns if c not in {data.target, *data.drop}]
    categorical = [c for c in features if c in data.categorical]
    numeric = [c for c in features if c not in data.categorical]
    return numeric, categorical


def text(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Categories as strings, "" for missing: the form the model is trained and served on.

    A missing category is a category of its own ("") rather than a guess; ONNX Runtime needs text
    inputs without nulls, so training, export, the service and batch inference all use this form.
    """
    return np.array(["" if v is None or v != v else str(v) for v in values], dtype=object)


def model_input(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input: numeric columns as float64, then categorical ones as text()."""
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        out[column] = text(frame[column].to_numpy())
    return out


def task_of(target: pd.Series, data: DataParams) -> Task:
    """data.task, or with `auto` what the target's values say: text, booleans or at most
    MAX_CLASSES distinct numbers are classes; any more distinct numbers are a quantity."""
    if data.task != "auto":
        return data.task
    known = target.dropna()
    if pd.api.types.is_bool_dtype(known):
        return "classification"
    numbers = pd.to_numeric(known, errors="coerce")
    if numbers.isna().any() or numbers.nunique() <= MAX_CLASSES:
        return "classification"
    return "regression"
