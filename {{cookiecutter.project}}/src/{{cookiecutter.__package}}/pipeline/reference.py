"""Reference stage: what the training data looked like, for `make drift` and the online gauges."""

import json
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import is_regressor
from sklearn.pipeline import Pipeline

from .. import cli
from ..data import feature_columns, model_input, read_table, write_table
from ..params import DataParams, ReferenceParams, load


def sample(
    frame: pd.DataFrame, model: Pipeline, data: DataParams, params: ReferenceParams, seed: int
) -> pd.DataFrame:
    """A seeded sample of the training rows, with the model's prediction for each (a class as
    text, or a regression's number)."""
    rows = frame.sample(n=min(params.rows, len(frame)), random_state=seed).reset_index(drop=True)
    numeric, categorical = feature_columns(list(rows.columns), data)
    x = model_input(rows, numeric, categorical)
    predicted = model.predict(x)
    return x.assign(prediction=predicted if is_regressor(model) else predicted.astype(str))


def statistics(rows: pd.DataFrame, numeric: list[str], params: ReferenceParams) -> dict[str, Any]:
    """Per feature (and for the prediction), the bins and their shares the online gauges compare to.

    Numbers (a regression's prediction too): inner edges of quantile bins (a missing value is a
    bin of its own, the last);
    categories and the prediction: each value's share, "" (missing) included.
    """
    stats: dict[str, Any] = {}
    for column in rows.columns:
        values = rows[column]
        if column in numeric or pd.api.types.is_float_dtype(values):  # a regression's prediction
            known = values.dropna()
            edges = np.unique(np.quantile(known, np.linspace(0, 1, params.bins + 1)[1:-1]))
            counts = np.bincount(
                np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1
            )
            shares = [*(counts / len(values)), values.isna().mean()]
            stats[column] = {"edges": edges.tolist(), "shares": [float(s) for s in shares]}
        else:
            shares = values.value_counts(normalize=True)
            stats[column] = {"categories": {str(k): float(v) for k, v in shares.items()}}
    return stats


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "train", "model", "out")
    params = load()
    frame = read_table(args.train)
    rows = sample(frame, joblib.load(args.model), params.data, params.reference, params.train.seed)
    numeric, _ = feature_columns(list(frame.columns), params.data)
    write_table(rows, args.out / "sample.parquet")
    stats = statistics(rows, numeric, params.reference)
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
