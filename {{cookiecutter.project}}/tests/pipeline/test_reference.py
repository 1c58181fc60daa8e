"""Reference stage: a seeded sample with predictions, and the bins the online gauges compare to."""

import numpy as np
import pandas as pd
import pytest

from tumor_classifier.params import Params, ReferenceParams
from tumor_classifier.pipeline import reference, split, train


@pytest.fixture(scope="module")
def rows(customers: pd.DataFrame, customers_params: Params) -> pd.DataFrame:
    p = customers_params
    train_rows, _ = split.split(customers, "churned", p.split)
    model = train.fit(train_rows, p.data, p.train).model
    return reference.sample(
        train_rows, model, p.data, ReferenceParams(rows=300, bins=5), p.train.seed
    )


def test_sample_is_seeded_with_model_inputs_and_predictions(rows: pd.DataFrame) -> None:
    assert len(rows) == 300
    assert list(rows.columns) == ["tenure", "spend", "plan", "region", "prediction"]
    assert set(rows["prediction"]) <= {"yes", "no"}
    assert "" in set(rows["region"])  # missing categories are the "" category, as in training


def test_statistics_cover_every_value(rows: pd.DataFrame) -> None:
    stats = reference.statistics(rows, ["tenure", "spend"], ReferenceParams(rows=300, bins=5))
    assert len(stats["spend"]["edges"]) == 4
    assert len(stats["spend"]["shares"]) == 6  # five bins and the missing values
    assert stats["tenure"]["shares"][-1] == pytest.approx(rows["tenure"].isna().mean())
    for column in ("tenure", "spend"):
        assert sum(stats[column]["shares"]) == pytest.approx(1)
    assert sum(stats["region"]["categories"].values()) == pytest.approx(1)
    assert np.all(np.diff(stats["spend"]["edges"]) > 0)
