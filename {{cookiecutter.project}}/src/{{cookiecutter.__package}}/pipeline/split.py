"""Split stage: a seeded train/test split, stratified by the target when asked."""

import argparse
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from .. import cli, params
from ..data import read_table, write_table
from ..params import Split


def split(frame: pd.DataFrame, target: str, p: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test); every class needs two rows to be stratified."""
    counts = frame[target].value_counts()
    if p.stratify and counts.min() < 2:
        rare = ", ".join(map(str, counts[counts < 2].index))
        raise cli.UserError(
            f"class {rare} has fewer than 2 rows: add data or set split.stratify: false"
        )
    try:
        train, test = train_test_split(
            frame,
            test_size=p.test_size,
            random_state=p.seed,
            stratify=frame[target] if p.stratify else None,
        )
    except ValueError as error:
        raise cli.UserError(f"cannot split {len(frame)} rows: {error}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="split", description=__doc__)
    parser.add_argument("validated", type=Path)
    parser.add_argument("out", type=Path, help="folder for train.parquet and test.parquet")
    args = parser.parse_args(argv)
    p = params.load()
    train, test = split(read_table(args.validated), p.data.target, p.split)
    write_table(train, args.out / "train.parquet")
    write_table(test, args.out / "test.parquet")


if __name__ == "__main__":
    cli.run(main)
