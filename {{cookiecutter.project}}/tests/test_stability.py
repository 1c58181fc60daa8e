"""Numerical stability at the float limits: training on huge and tiny columns, and the served
predictor on the most extreme values its contract admits."""

import json
import math
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import contract
from tumor_classifier.cli import UserError
from tumor_classifier.params import Params, load
from tumor_classifier.pipeline import (
    evaluate,
    export,
    split,
    train,
    validate,
)
from tumor_classifier.serving.predict import Predictor

from conftest import Served

TINY = float(np.finfo(np.float32).tiny)  # the smallest normal 32-bit float
EXTREMES = [contract.LARGEST, -contract.LARGEST, 1e30, -1e30, TINY, -TINY, 1e-45, 0.0]


def pipeline(table: pd.DataFrame, p: Params) -> tuple[train.Fitted, pd.DataFrame]:
    schema = validate.infer(table, p.data, p.validate_.range_margin)
    train_rows, test_rows = split.split(
        validate.check(table, schema, p.data, p.validate_), "cultivar", p.split
    )
    return train.fit(train_rows, p.data, p.train), test_rows


@pytest.mark.score("Mon5")
def test_huge_and_tiny_columns_train_to_finite_metrics(
    wine: pd.DataFrame, wine_params: Params
) -> None:
    """A column near the 32-bit limit and one near its smallest normal still train, evaluate
    and predict to finite numbers; ONNX, which computes in 32 bits, is declined where it would
    not, so the service answers from scikit-learn."""
    scaled = wine.assign(proline=wine["proline"] * 1e36, magnesium=wine["magnesium"] * 1e-36)
    fitted, test_rows = pipeline(scaled, wine_params)
    metrics, tables, _ = evaluate.evaluate(fitted.model, fitted.baseline, test_rows, wine_params)
    assert all(math.isfinite(v) for v in metrics.scores().values())
    assert metrics.accuracy > 0.9
    assert np.isfinite(tables["importance"][["importance", "std"]].to_numpy()).all()
    proba = fitted.model.predict_proba(test_rows.drop(columns="cultivar"))
    assert np.isfinite(proba).all()
    onnx, record = export.export(fitted.model, test_rows, wine_params.data, wine_params.export)
    assert onnx is None
    assert record["reason"] == "ONNX disagrees with scikit-learn"


def test_a_column_beyond_what_floats_can_scale_is_refused_in_one_line(
    wine: pd.DataFrame, wine_params: Params
) -> None:
    """The negative case: at 1e300 the scaler's variance overflows; training stops with one line
    instead of a model that answers NaN."""
    with pytest.raises(UserError, match=r"^training failed: .*NaN"):
        pipeline(wine.assign(proline=wine["proline"] * 1e300), wine_params)


def extreme_records(served: Served) -> list[dict[str, Any]]:
    """A held-out record with each feature in turn at each extreme value."""
    row: dict[str, Any] = json.loads(
        served.test.drop(columns="cultivar").head(1).to_json(orient="records")
    )[0]
    return [{**row, name: value} for name in row for value in EXTREMES]


@pytest.mark.score("Mon5")
def test_the_served_model_answers_finite_probabilities_or_refuses(flagging: Served) -> None:
    """Every feature at ±3.4e38, ±1e30, ±1.2e-38, 1e-45 and 0: the served predictor (ONNX,
    32 bits) gives probabilities in [0, 1] that sum to 1, or no finite answer, which the service
    refuses record by record; never a NaN in an answer."""
    p = load(flagging.folder / "params.yaml")
    features = contract.from_schema((flagging.folder / "schema.yaml").read_text(), p.data)
    predictor = Predictor(
        features, flagging.folder / "model.joblib", flagging.folder / "onnx/model.onnx"
    )
    records = extreme_records(flagging)
    proba = predictor.proba({f.name: [r[f.name] for r in records] for f in features})
    finite = np.isfinite(proba).all(axis=1)
    # The limits do break the arithmetic: without the guard some answers would be NaN.
    assert 0 < finite.sum() < len(records)
    assert ((proba[finite] >= 0) & (proba[finite] <= 1)).all()
    np.testing.assert_allclose(proba[finite].sum(axis=1), 1, rtol=1e-5)

    request = urllib.request.Request(
        f"{flagging.url}/predict",
        json.dumps({"records": records}).encode(),
        {"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 400
    detail = json.loads(refused.value.read())["detail"]
    assert {e["type"] for e in detail} == {"non_finite_prediction"}
    assert [e["loc"][1] for e in detail] == np.flatnonzero(~finite).tolist()

    answered = [r for r, ok in zip(records, finite, strict=True) if ok]
    request.data = json.dumps({"records": answered}).encode()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    given = np.array([list(a["probabilities"].values()) for a in body["predictions"]])
    assert len(given) == len(answered)
    np.testing.assert_allclose(given, proba[finite], atol=1e-6)
