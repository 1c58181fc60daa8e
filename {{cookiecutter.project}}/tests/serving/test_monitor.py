"""Online drift: the index math, and the service's gauges moving under drifted traffic."""

import json
import math
import urllib.request
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import contract
from tumor_classifier.data import feature_columns, model_input
from tumor_classifier.params import Params
from tumor_classifier.pipeline import reference, validate
from tumor_classifier.serving import monitor

from conftest import Served


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    expected = np.array([0.25, 0.25, 0.25, 0.25])
    assert monitor.psi(expected, expected) == pytest.approx(0)
    small, large = np.array([0.3, 0.25, 0.25, 0.2]), np.array([0.7, 0.1, 0.1, 0.1])
    assert 0 < monitor.psi(small, expected) < monitor.psi(large, expected)


@pytest.fixture(scope="module")
def drift(customers: pd.DataFrame, customers_params: Params) -> monitor.OnlineDrift:
    p = customers_params
    numeric, categorical = feature_columns(list(customers.columns), p.data)
    rows = model_input(customers, numeric, categorical).assign(prediction=customers["churned"])
    stats = reference.statistics(rows, numeric, p.reference)
    schema = str(validate.infer(customers, p.data, 0.1).to_yaml())
    return monitor.OnlineDrift(contract.from_schema(schema, p.data), stats, window=200)


def columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    return {c: frame[c].tolist() for c in ("tenure", "spend", "plan", "region")}


def test_the_window_tracks_the_recent_records(
    drift: monitor.OnlineDrift, customers: pd.DataFrame
) -> None:
    assert all(math.isnan(v) for v in drift.indices().values())
    same = customers.head(200)
    drift.observe(columns(same), same["churned"].tolist())
    calm = drift.indices()
    assert max(calm.values()) < 0.2
    shifted = customers.iloc[200:400].assign(spend=lambda f: f["spend"] + 60, plan="pro")
    for start in range(0, 200, 20):  # many small requests push the old records out
        part = shifted.iloc[start : start + 20]
        drift.observe(columns(part), part["churned"].tolist())
    stormy = drift.indices()
    assert stormy["spend"] > 1
    assert stormy["plan"] > 1
    assert stormy["tenure"] < 0.2
    assert drift.counts.sum(axis=1).tolist() == [200] * len(drift.names)


def metric(url: str, series: str) -> float:
    """One series' value from the service's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    values = dict(line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return float(values[series])


def post(url: str, rows: list[dict[str, Any]]) -> None:
    body = json.dumps({"records": rows}).encode()
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def send(url: str, rows: list[dict[str, Any]], total: int = 5000, size: int = 25) -> None:
    """`total` records in small requests, so that every worker's window fills with them."""
    for start in range(0, total, size):
        post(url, [rows[(start + i) % len(rows)] for i in range(size)])


def test_the_service_gauges_move_under_drifted_traffic(
    served: Served, customers: pd.DataFrame, customers_params: Params
) -> None:
    # The whole table as traffic: a window of the test rows alone is too small a sample to be calm.
    rows = json.loads(customers.drop(columns=["churned", "customer_id"]).to_json(orient="records"))
    send(served.url, rows)
    calm = metric(served.url, 'model_feature_drift{feature="spend"}')
    # Drifted, yet inside the reviewed range: the service refuses numbers outside it.
    schema = (served.folder / "schema.yaml").read_text()
    high = next(
        f.high for f in contract.from_schema(schema, customers_params.data) if f.name == "spend"
    )
    send(served.url, [{**row, "spend": min(row["spend"] + 80, high)} for row in rows])
    stormy = metric(served.url, 'model_feature_drift{feature="spend"}')
    assert stormy > customers_params.drift.psi_alert > calm
    assert (
        metric(served.url, 'model_feature_drift{feature="region"}')
        < customers_params.drift.psi_alert
    )


def test_a_regression_prediction_drifts_as_a_distribution(
    diabetes: pd.DataFrame, diabetes_params: Params
) -> None:
    p = diabetes_params
    numeric, categorical = feature_columns(list(diabetes.columns), p.data)
    rows = model_input(diabetes, numeric, categorical).assign(
        prediction=diabetes["progression"].astype(float)
    )
    stats = reference.statistics(rows, numeric, p.reference)
    assert "edges" in stats["prediction"]  # binned as a number, not as 214 categories
    schema = str(validate.infer(diabetes, p.data, 0.1).to_yaml())
    gauges = monitor.OnlineDrift(contract.from_schema(schema, p.data), stats, window=200)
    features = {c: diabetes[c].tolist() for c in numeric}
    gauges.observe(features, diabetes["progression"].tolist())
    same = gauges.indices()
    assert same["prediction"] < 0.2  # drift.psi_alert
    gauges.observe(features, (diabetes["progression"] + 100).tolist())  # answers shifted up
    assert gauges.indices()["prediction"] > 1.0
    assert gauges.indices()["bmi"] < 0.2  # the inputs did not move
