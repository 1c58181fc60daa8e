"""Split stage: a seeded train/test split, stratified by the class when asked (not a quantity)."""

import pandas as pd
from sklearn.model_selection import train_test_split

from .. import cli
from ..data import read_table, task_of, write_table
from ..params import SplitParams, Task, load


def split(
    frame: pd.DataFrame, target: str, params: SplitParams, task: Task = "classification"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test); every class needs two rows to be stratified; a regression is not."""
    stratify = params.stratify and task == "classification"
    counts = frame[target].value_counts()
    if stratify and counts.min() < 2:
        rare = ", ".join(map(str, counts[counts < 2].index))
        raise cli.UserError(
            f"class {rare} has fewer than 2 rows: add data or set split.stratify: false"
        )
    try:
        train, test = train_test_split(
            frame,
            test_size=params.test_size,
            random_state=params.seed,
            stratify=frame[target] if stratify else None,
        )
    except ValueError as error:
        raise cli.UserError(f"cannot split {len(frame)} rows: {error}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "validated", "out")
    params = load()
    frame = read_table(args.validated)
    task = task_of(frame[params.data.target], params.data)
    train, test = split(frame, params.data.target, params.split, task)
    write_table(train, args.out / "train.parquet")
    write_table(test, args.out / "test.parquet")


if __name__ == "__main__":
    cli.run(main)
