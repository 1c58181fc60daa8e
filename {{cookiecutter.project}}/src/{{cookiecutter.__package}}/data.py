"""Tables in and out: CSV, Parquet or JSON lines; the role of each column; fresh raw data."""

import argparse
import shutil
import urllib.request
from pathlib import Path

import pandas as pd

from . import cli
from .cli import UserError
from .params import Data

READERS = (".csv", ".parquet", ".jsonl")


def read_table(path: Path, data: Data | None = None) -> pd.DataFrame:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def feature_columns(columns: list[str], data: Data) -> tuple[list[str], list[str]]:
    """Split the feature columns into (numeric, categorical), in table order."""
    declared = {data.target, *data.categorical, *data.drop}
    missing = sorted(declared - set(columns))
    if missing:
        raise UserError(f"params.yaml data names columns the table lacks: {', '.join(missing)}")
    features = [c for c in columns if c not in {data.target, *data.drop}]
    categorical = [c for c in features if c in data.categorical]
    numeric = [c for c in features if c not in data.categorical]
    return numeric, categorical


def model_input(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input: numeric columns as float64, categorical as text with "" for missing.

    A missing category is a category of its own ("") rather than a guess; ONNX Runtime needs
    text inputs without nulls, so training, the service and batch inference all use this form.
    """
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        values = frame[column].astype(object)
        out[column] = values.where(values.notna(), "").astype(str)
    return out


def refresh(source: str, raw: Path) -> None:
    """Replace the raw data with a fresh export from a path or an http(s) URL (for example a
    presigned URL of the warehouse's daily export); the pipeline's validate stage judges it."""
    temporary = raw.with_suffix(".download")
    try:
        if "://" in source:
            with (
                urllib.request.urlopen(source, timeout=300) as response,
                temporary.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
        else:
            shutil.copyfile(source, temporary)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot fetch {source}: {error}") from None
    temporary.replace(raw)  # all or nothing: a failed download leaves the old data in place


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="data", description="Fetch fresh raw data.")
    parser.add_argument("command", choices=["refresh"])
    parser.add_argument("source", help="a path or an http(s) URL")
    parser.add_argument("raw", type=Path)
    args = parser.parse_args(argv)
    if not args.source:
        raise UserError("no SOURCE: make refresh SOURCE=<path or URL of the fresh data>")
    refresh(args.source, args.raw)
    print(f"{args.raw} refreshed from {args.source}")


if __name__ == "__main__":
    cli.run(main)
