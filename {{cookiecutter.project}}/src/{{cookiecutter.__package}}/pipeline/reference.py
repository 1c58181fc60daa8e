"""Reference stage: what the training data looked like, for `make drift` and the online gauges."""

import argparse
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .. import cli, params
from ..data import feature_columns, model_input, read_table
from ..params import Data, Reference


def sample(
    frame: pd.DataFrame, model: Pipeline, data: Data, r: Reference, seed: int
) -> pd.DataFrame:
    """A seeded sample of the training rows, with the model's prediction for each."""
    rows = frame.sample(n=min(r.rows, len(frame)), random_state=seed).reset_index(drop=True)
    numeric, categorical = feature_columns(list(rows.columns), data)
    x = model_input(rows, numeric, categorical)
    return x.assign(prediction=model.predict(x).astype(str))


def statistics(rows: pd.DataFrame, numeric: list[str], r: Reference) -> dict[str, Any]:
    """Per feature (and for the prediction), the bins and their shares the online gauges compare to.

    Numbers: inner edges of quantile bins (a missing value is a bin of its own, the last);
    categories and the prediction: each value's share, "" (missing) included.
    """
    stats: dict[str, Any] = {}
    for column in rows.columns:
        values = rows[column]
        if column in numeric:
            known = values.dropna()
            edges = np.unique(np.quantile(known, np.linspace(0, 1, r.bins + 1)[1:-1]))
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
    parser = argparse.ArgumentParser(prog="reference", description=__doc__)
    parser.add_argument("train", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path, help="folder for sample.parquet and stats.json")
    args = parser.parse_args(argv)
    p = params.load()
    frame = read_table(args.train)
    rows = sample(frame, joblib.load(args.model), p.data, p.reference, p.train.seed)
    numeric, _ = feature_columns(list(frame.columns), p.data)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(args.out / "sample.parquet", index=False)
    stats = statistics(rows, numeric, p.reference)
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
