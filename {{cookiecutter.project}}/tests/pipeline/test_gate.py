"""Gate stage: every threshold, the baseline margin and the slice floor can fail it, in one line."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from tumor_classifier.cli import UserError
from tumor_classifier.data import feature_columns, model_input
from tumor_classifier.metrics import Latency, Metrics, RegressionMetrics
from tumor_classifier.params import GateParams, Params
from tumor_classifier.pipeline import evaluate, gate, split, train

from conftest import write_params

GOOD: dict[str, Any] = {
    "accuracy": 0.96,
    "precision": 0.96,
    "recall": 0.95,
    "f1": 0.96,
    "roc_auc": 0.99,
    "log_loss": 0.1,
    "baseline": {
        "accuracy": 0.63,
        "precision": 0.3,
        "recall": 0.5,
        "f1": 0.39,
        "roc_auc": 0.5,
        "log_loss": 0.66,
    },
    "per_class": {},
    "slices": {
        "small": {"rows": 40, "accuracy": 0.97, "f1": 0.96},
        "tiny": {"rows": 3, "accuracy": 0.3, "f1": 0.3},
    },
}


def with_(path: str, value: float) -> Metrics:
    metrics = copy.deepcopy(GOOD)
    *parents, key = path.split(".")
    target = metrics
    for parent in parents:
        target = target[parent]
    target[key] = value
    return Metrics.model_validate(metrics)


def test_good_metrics_pass_and_tiny_slices_are_not_gated(project_params: Params) -> None:
    result = gate.verdict(Metrics.model_validate(GOOD), project_params.gate)
    assert result.passed
    assert "worst slice (small)" in result.checks[-1].check


@pytest.mark.parametrize(
    ("path", "value", "failed"),
    [
        ("accuracy", 0.5, "accuracy >= 0.9"),
        ("log_loss", 0.9, "log_loss <= 0.3"),
        pytest.param(
            "baseline.roc_auc", 0.9, "roc_auc >= baseline 0.9 + 0.2", marks=pytest.mark.score("M5")
        ),
        pytest.param(
            "slices.small.accuracy",
            0.6,
            "worst slice (small) accuracy >= 0.85",
            marks=pytest.mark.score("M6"),
        ),
    ],
)
def test_each_check_can_fail(project_params: Params, path: str, value: float, failed: str) -> None:
    result = gate.verdict(with_(path, value), project_params.gate)
    assert not result.passed
    assert [c.check for c in result.checks if not c.passed] == [failed]


@pytest.mark.score("D2")
def test_the_gate_fails_on_a_feature_no_better_than_noise_when_asked(
    project_params: Params,
) -> None:
    noisy = Metrics.model_validate({**GOOD, "uninformative": ["noise"]})
    # As shipped, evaluate flags the feature and the gate lets it pass.
    assert gate.verdict(noisy, project_params.gate).passed
    strict = project_params.gate.model_copy(update={"fail_uninformative": True})
    result = gate.verdict(noisy, strict)
    assert not result.passed
    assert [(c.check, c.value) for c in result.checks if not c.passed] == [
        ("features no better than noise <= 0", 1)
    ]
    assert gate.verdict(Metrics.model_validate(GOOD), strict).passed


def test_unknown_metric_is_a_params_mistake(project_params: Params) -> None:
    bad = GateParams(**{**project_params.gate.model_dump(), "min": {"auc": 0.9}})
    with pytest.raises(UserError, match="gate names unknown metrics auc"):
        gate.verdict(Metrics.model_validate(GOOD), bad)


def gate_command(*args: str) -> subprocess.CompletedProcess[str]:
    """The gate stage as dvc runs it, in the working directory."""
    return subprocess.run(
        [sys.executable, "-m", "tumor_classifier.pipeline.gate", *args],
        capture_output=True,
        text=True,
    )


@pytest.mark.score("I4")
def test_command_line_fails_in_one_line_and_writes_nothing(
    project_params: Params, workdir: Path
) -> None:
    write_params(workdir, project_params)
    Path("metrics.json").write_text(with_("roc_auc", 0.6).model_dump_json())
    result = gate_command("metrics.json", "gate.json")
    assert result.returncode == 1
    assert (
        result.stderr
        == "gate: roc_auc >= 0.95 failed (0.6); roc_auc >= baseline 0.5 + 0.2 failed (0.6)\n"
    )
    assert not Path("gate.json").exists()


def test_metrics_of_another_shape_are_one_line(project_params: Params, workdir: Path) -> None:
    write_params(workdir, project_params)
    Path("metrics.json").write_text(json.dumps({**GOOD, "roc_auc": "high"}))
    result = gate_command("metrics.json", "gate.json")
    assert result.returncode == 1
    assert result.stderr.startswith("gate: metrics.json: roc_auc: Input should be a valid number")


@pytest.fixture(scope="module")
def timed(wine: pd.DataFrame, wine_params: Params) -> dict[str, Latency]:
    """The wine model and a 300-tree forest on the same columns, each timed against the same
    baseline in this run, as evaluate times them."""
    p = wine_params
    train_rows, test_rows = split.split(wine, p.data.target, p.split)
    fitted = train.fit(train_rows, p.data, p.train)
    numeric, categorical = feature_columns(list(wine.columns), p.data)
    x = model_input(train_rows, numeric, categorical)
    forest = train.pipeline(RandomForestClassifier(300, random_state=0), numeric, categorical)
    forest.fit(x, train_rows[p.data.target])
    test = model_input(test_rows, numeric, categorical)
    repeats = p.evaluate.latency_repeats
    return {
        "model": evaluate.latency(fitted.model, fitted.baseline, test, repeats),
        "forest": evaluate.latency(forest, fitted.baseline, test, repeats),
    }


def commit_champion(record: Latency) -> None:
    """A repository whose main holds the champion's reports/latency.json."""
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "--quiet", "--initial-branch=main"], check=True)
    Path("reports").mkdir()
    Path("reports/latency.json").write_text(record.model_dump_json())
    subprocess.run([*git, "add", "reports"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "champion"], check=True)


@pytest.mark.score("Mon6")
def test_a_model_slower_than_the_champion_fails_the_gate(
    timed: dict[str, Latency], project_params: Params, workdir: Path
) -> None:
    """The champion on main is the wine model; a forest that predicts the same rows several times
    slower (each against the baseline, timed in turn in this run) fails; the model itself passes."""
    model, forest = timed["model"], timed["forest"]
    assert model.rows == forest.rows == 1000
    assert forest.relative > 2 * project_params.gate.max_slowdown * model.relative
    write_params(workdir, project_params)
    commit_champion(model)
    Path("metrics.json").write_text(Metrics.model_validate(GOOD).model_dump_json())
    Path("reports/latency.json").write_text(forest.model_dump_json())
    refused = gate_command("metrics.json", "gate.json", "--latency", "reports/latency.json")
    assert refused.returncode == 1
    ratio = forest.relative / model.relative
    assert refused.stderr == f"gate: predict time / champion's <= 1.5 failed ({ratio:.4g})\n"
    assert not Path("gate.json").exists()
    Path("reports/latency.json").write_text(model.model_dump_json())
    passed = gate_command("metrics.json", "gate.json", "--latency", "reports/latency.json")
    assert passed.returncode == 0, passed.stderr
    last = json.loads(Path("gate.json").read_text())["checks"][-1]
    assert last == {"check": "predict time / champion's <= 1.5", "value": 1.0, "passed": True}


def test_a_first_model_has_no_champion_to_be_timed_against(
    timed: dict[str, Latency], project_params: Params, workdir: Path
) -> None:
    write_params(workdir, project_params)
    Path("metrics.json").write_text(Metrics.model_validate(GOOD).model_dump_json())
    Path("latency.json").write_text(timed["forest"].model_dump_json())
    result = gate_command("metrics.json", "gate.json", "--latency", "latency.json")
    assert result.returncode == 0, result.stderr
    checks = json.loads(Path("gate.json").read_text())["checks"]
    assert not [c for c in checks if "champion" in c["check"]]


def regression(rmse: float, r2: float, worst_r2: float = 0.3) -> RegressionMetrics:
    """A regression's metrics against a baseline of RMSE 70 and R² 0."""
    slices = {
        "bmi 18..23": {"rows": 30, "rmse": 50.0, "mae": 40.0, "r2": worst_r2},
        "bmi 23..42": {"rows": 30, "rmse": 45.0, "mae": 35.0, "r2": 0.5},
        "bmi 42..50": {"rows": 2, "rmse": 90.0, "mae": 90.0, "r2": -3.0},  # too small to gate
    }
    return RegressionMetrics.model_validate(
        {
            "task": "regression",
            **{"rmse": rmse, "mae": rmse * 0.8, "r2": r2},
            "baseline": {"rmse": 70.0, "mae": 60.0, "r2": 0.0},
            "slices": slices,
        }
    )


def test_a_regression_is_held_to_the_regression_block(project_params: Params) -> None:
    result = gate.verdict(regression(rmse=50.0, r2=0.45), project_params.gate)
    assert result.passed
    names = [c.check for c in result.checks]
    assert names[0] == "r2 >= 0.1"
    assert "r2 >= baseline 0 + 0.1" in names
    assert names[-1].startswith("worst slice (bmi 18..23) r2 >=")


@pytest.mark.parametrize(
    ("metrics", "failed"),
    [
        (regression(rmse=72.0, r2=-0.05), "r2 >= baseline 0 + 0.1"),  # worse than the mean
        (regression(rmse=65.0, r2=0.05), "r2 >= 0.1"),
        (regression(rmse=50.0, r2=0.45, worst_r2=-0.2), "worst slice (bmi 18..23) r2"),
    ],
)
def test_a_regression_fails_each_of_its_checks(
    metrics: RegressionMetrics, failed: str, project_params: Params
) -> None:
    result = gate.verdict(metrics, project_params.gate)
    assert not result.passed
    assert any(c.check.startswith(failed) for c in result.checks if not c.passed)


def test_an_error_metric_is_better_lower_margin_and_slice_included(project_params: Params) -> None:
    rules = project_params.gate.regression
    assert rules is not None
    by_rmse = rules.model_copy(
        update={
            "metric": "rmse",
            "baseline_margin": 10.0,
            "min": {},
            "max": {"mae": 45.0},
            "slice_metric": "rmse",
            "slice_floor": 55.0,
        }
    )
    params = project_params.gate.model_copy(update={"regression": by_rmse})
    good = gate.verdict(regression(rmse=55.0, r2=0.4), params)
    assert good.passed, good.checks
    assert [c.check for c in good.checks] == [
        "mae <= 45.0",
        "rmse <= baseline 70 - 10.0",
        "worst slice (bmi 18..23) rmse <= 55.0",
    ]
    close = gate.verdict(regression(rmse=62.0, r2=0.2), params)  # better, not by the margin
    assert [c.check for c in close.checks if not c.passed] == [
        "mae <= 45.0",
        "rmse <= baseline 70 - 10.0",
    ]


def test_a_regressor_worse_than_the_dummy_fails_the_gate(
    diabetes: pd.DataFrame, diabetes_params: Params
) -> None:
    p = diabetes_params
    train_rows, test_rows = split.split(diabetes, p.data.target, p.split, "regression")
    fitted = train.fit(train_rows, p.data, p.train)
    # The same estimator taught on shuffled targets: it learns noise, and does worse than the mean.
    targets = train_rows["progression"].sample(frac=1, random_state=0).to_numpy()
    shuffled = train_rows.assign(progression=targets)
    noise = train.fit(shuffled, p.data, p.train).model
    good, _ = evaluate.evaluate_regression(fitted.model, fitted.baseline, test_rows, p)
    bad, _ = evaluate.evaluate_regression(noise, fitted.baseline, test_rows, p)
    assert gate.verdict(good, p.gate).passed
    verdict = gate.verdict(bad, p.gate)
    assert bad.rmse > bad.baseline.rmse
    assert not verdict.passed
    assert any(c.check.startswith("r2 >= baseline") and not c.passed for c in verdict.checks)


def test_main_reads_a_regression_metrics_file(project_params: Params, workdir: Path) -> None:
    write_params(workdir, project_params)
    (workdir / "metrics.json").write_text(regression(rmse=72.0, r2=-0.05).model_dump_json())
    result = gate_command("metrics.json", "gate.json")
    assert result.returncode == 1
    assert result.stderr.startswith("gate: r2 >= 0.1 failed (-0.05); r2 >= baseline 0 + 0.1 failed")
    assert not (workdir / "gate.json").exists()
