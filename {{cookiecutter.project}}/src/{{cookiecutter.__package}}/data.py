"""Tables in and out (CSV, Parquet, JSON lines), the role of each column, the model's input."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cli import UserError
from .params import DataParams

READERS = (".csv", ".parquet", ".jsonl")


def read_table(path: Path, data: DataParams | None = None) -> pd.DataFrame:
    """Read a table by its suffix; categorical columns and the target are read as text."""
    if path.suffix not in READERS:
        raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    text_columns = [*data.categorical, data.target] if data else []
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
        frame = (
            pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
        )
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: cannot be read as {path.suffix[1:]} ({error})") from None
    for column in set(text_columns) & set(frame.columns):
        # Text, with nulls kept as nulls (astype(str) alone would write "None").
        values = frame[column]
        frame[column] = values.where(values.isna(), values.astype(str))
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a table in the format its suffix names, as read_table reads it back."""
    if path.suffix not in READERS:
        raise UserError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)


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
