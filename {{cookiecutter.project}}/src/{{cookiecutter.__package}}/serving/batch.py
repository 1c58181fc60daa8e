"""`make batch`: predictions for a table in object storage (any URL the DVC remote could have:
s3://, gs://, azure://, a path), written beside it with the model version; the CronJob runs this."""

import argparse
import importlib.util
import os

import fsspec
import pandas as pd
from fsspec.registry import known_implementations

from .. import cli, contract
from ..data import JSON_AS_WRITTEN, arrow_table, as_text, dictionary_columns, text_but
from . import bundle
from .predict import add_keep, predict_frame

SUFFIXES = (".csv", ".parquet", ".jsonl")


def fsspec_url(url: str) -> str:
    """pandas reaches storage through fsspec, whose Azure driver (adlfs) says az:// for azure://."""
    return "az://" + url.removeprefix("azure://") if url.startswith("azure://") else url


def check_storage(url: str) -> None:
    """Fail in one line, before the model loads, when no installed fsspec driver reads the URL:
    the image holds the driver of the DVC remote it was made for (pyproject.toml) and no other."""
    protocol, _ = fsspec.core.split_protocol(fsspec_url(url))
    if protocol in (None, "file"):
        return
    if protocol not in known_implementations:
        raise cli.UserError(f"{url}: fsspec knows no storage {protocol}://")
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = known_implementations[protocol]["class"].split(".")[0]
        raise cli.UserError(
            f"{url}: reading {protocol}:// needs {package}, which is not installed: "
            f"add it to the dependencies in pyproject.toml (uv add {package})"
        ) from None


def check_format(url: str) -> None:
    """Fail in one line, before the model loads, on a Parquet table where pyarrow is not installed:
    the image leaves it out (156 MB, against 405 for all its other Python packages): the pipeline
    needs it, the service does not."""
    if url.endswith(".parquet") and importlib.util.find_spec("pyarrow") is None:
        raise cli.UserError(
            f"{url}: reading Parquet needs pyarrow, which is not installed: add it to the "
            "dependencies in pyproject.toml (uv add pyarrow), or give a CSV or JSON lines table"
        )


def output_of(table: str, version: str) -> str:
    """Beside the table, named after it and the model: input.csv -> input.predictions-<v>.csv."""
    stem, suffix = os.path.splitext(table)
    return f"{stem}.predictions-{version}{suffix}"


def read(url: str, numbers: list[str], text_columns: list[str]) -> pd.DataFrame:
    """The table with the `numbers` columns as numbers and the others as the file has them, as
    `make predict` reads it: a CSV's as text as written (an id keeps its leading zeros), JSON's
    as JSON types them."""
    try:
        if url.endswith(".csv"):
            return pd.read_csv(fsspec_url(url), dtype=text_but(fsspec_url(url), numbers))
        if url.endswith(".parquet"):
            return pd.read_parquet(fsspec_url(url))
        table = pd.read_json(fsspec_url(url), lines=True, **JSON_AS_WRITTEN)
        return as_text(table, text_columns)
    except FileNotFoundError:
        raise cli.UserError(f"{url}: no such table") from None


def write(frame: pd.DataFrame, url: str) -> None:
    if url.endswith(".csv"):
        frame.to_csv(fsspec_url(url), index=False)
    elif url.endswith(".parquet"):
        import pyarrow.parquet as pq  # installed: check_format saw to it

        # As make predict writes it: the predicted class as text, not as a pandas category.
        with fsspec.open(fsspec_url(url), "wb") as out:
            pq.write_table(arrow_table(frame), out, use_dictionary=dictionary_columns(frame))
    else:
        frame.to_json(fsspec_url(url), orient="records", lines=True, date_format="iso")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="batch", description=__doc__)
    parser.add_argument("table", nargs="?", help="its URL or path (default: BATCH_TABLE)")
    add_keep(parser)
    args = parser.parse_args(argv)
    # `make batch` passes an empty TABLE when none is given: the CronJob's BATCH_TABLE then.
    table: str | None = args.table or os.environ.get("BATCH_TABLE")
    if not table:
        raise cli.UserError("no table: give its URL, or set BATCH_TABLE")
    if not table.endswith(SUFFIXES):
        raise cli.UserError(f"{table}: unsupported format; use one of {', '.join(SUFFIXES)}")
    check_format(table)
    check_storage(table)
    stored = bundle.load()
    numbers = [f.name for f in stored.features if f.numeric]
    frame = read(table, numbers, [f.name for f in stored.features if not f.numeric])
    # The service's range policy: refuse names the rows outside, flag answers them and names them.
    refuse = stored.settings["out_of_range"] == "refuse"
    accept_unseen = stored.settings["accept_unseen_categories"]
    contract.check_frame(frame, stored.features, accept_unseen, refuse)
    ranges = None if refuse else contract.Ranges(stored.features)
    predicted = predict_frame(stored.predictor, frame, ranges, args.keep)
    predictions = predicted.assign(model_version=stored.version)
    out = output_of(table, stored.version)
    write(predictions, out)
    print(f"wrote {len(predictions)} predictions to {out} ({stored.predictor.backend})")


if __name__ == "__main__":
    cli.run(main)
