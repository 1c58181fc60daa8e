"""Regression tier (slow): a table whose target is a quantity, scikit-learn's diabetes, through the
make targets the example goes through (schema, train, bento, serve, predict), in a copy of the
baked project where only the data and data.target change."""

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import post, run
from test_serving import start, stop

pytestmark = pytest.mark.slow

# The copy runs in the session project's environment, which must stay as it is: no uv sync there.
SHARED_ENV = {"UV_NO_SYNC": "1"}
UNLABELLED = 5  # rows written without a target: validate drops and counts them

# Run in the project's environment: the diabetes table as data/raw.csv, a few targets missing.
DIABETES = f"""
from sklearn.datasets import load_diabetes
frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={{"target": "progression"}})
frame.loc[frame.index[:{UNLABELLED}], "progression"] = None
frame.to_csv("data/raw.csv", index=False)
"""


def set_line(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def regression(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baked project with the diabetes table, trained and bundled."""
    copy = tmp_path_factory.mktemp("regression") / project.name
    outputs = ("models", "reports", "build", "mlflow.db", "mlruns", ".venv")
    shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns(*outputs))
    (copy / ".venv").symlink_to(project / ".venv")
    run(["uv", "run", "--locked", "python", "-c", DIABETES], copy, env=SHARED_ENV)
    params = copy / "params.yaml"
    set_line(params, "  target: diagnosis ", "  target: progression ")
    # Slices of a number too: auto takes a categorical feature, and `sex` may be read as a number.
    set_line(params, "column: auto ", "column: bmi ")
    run(["make", "schema"], copy, env=SHARED_ENV)
    run(["make", "train"], copy, env=SHARED_ENV)
    run(["make", "bento"], copy, env=SHARED_ENV)
    return copy


def test_the_task_follows_the_target_through_train_and_gate(regression: Path) -> None:
    metrics = json.loads((regression / "reports/metrics.json").read_text())
    assert metrics["task"] == "regression"
    assert metrics["r2"] > metrics["baseline"]["r2"] + 0.1
    assert metrics["rmse"] < metrics["baseline"]["rmse"]
    assert [name.split(" ")[0] for name in metrics["slices"]] == ["bmi"] * 3
    gate = json.loads((regression / "reports/gate.json").read_text())
    assert gate["passed"]
    assert gate["checks"][0]["check"].startswith("r2 ")
    validation = json.loads((regression / "reports/validation.json").read_text())
    assert validation["unlabelled"] == UNLABELLED
    assert validation["rows"] == 442 - UNLABELLED
    assert validation["classes"] == {}
    plots = {path.name for path in (regression / "reports/plots").iterdir()}
    assert {"predicted_actual.png", "residuals.png", "importance.png"} <= plots
    assert "roc.csv" not in plots
    card = (regression / "reports/model_card.md").read_text()
    assert "`sklearn.linear_model.Ridge` (a regression)" in card
    parity = json.loads((regression / "models/onnx/parity.json").read_text())
    assert parity["exported"]
    assert parity["max_prediction_difference"] < 1e-3


@pytest.fixture(scope="module")
def served(regression: Path) -> Iterator[str]:
    server, url = start(
        ["make", "serve", "PORT={port}"], regression, regression / "build/serve.log", **SHARED_ENV
    )
    try:
        yield url
    finally:
        stop(server)


def test_a_served_regression_answers_a_number(regression: Path, served: str) -> None:
    status, answer = post(served, (regression / "build/example.json").read_bytes())
    assert status == 200
    (prediction,) = answer["predictions"]  # type: ignore[misc]
    assert set(prediction) == {"prediction", "out_of_range"}
    assert isinstance(prediction["prediction"], float)
    assert math.isfinite(prediction["prediction"])


def test_make_predict_writes_a_number_per_row(regression: Path) -> None:
    out = regression / "build/predictions.csv"
    run(
        ["make", "predict", "INPUT=data/split/test.parquet", f"OUTPUT={out}"],
        regression,
        env=SHARED_ENV,
    )
    header, *rows = out.read_text().splitlines()
    columns = header.split(",")
    assert columns[-2:] == ["progression", "prediction"]
    assert not any(c.startswith("probability_") for c in columns)
    assert len(rows) == math.ceil((442 - UNLABELLED) * 0.2)
    assert all(math.isfinite(float(row.rsplit(",", 1)[1])) for row in rows)
