"""Gate stage: every threshold, the baseline margin and the slice floor can fail it, in one line."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.metrics import Metrics
from tumor_classifier.params import GateParams, Params
from tumor_classifier.pipeline import gate

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


def test_unknown_metric_is_a_params_mistake(project_params: Params) -> None:
    bad = GateParams(**{**project_params.gate.model_dump(), "min": {"auc": 0.9}})
    with pytest.raises(UserError, match="gate names unknown metrics auc"):
        gate.verdict(Metrics.model_validate(GOOD), bad)


@pytest.mark.score("I4")
def test_command_line_fails_in_one_line_and_writes_nothing(
    project_params: Params, workdir: Path
) -> None:
    write_params(workdir, project_params)
    Path("metrics.json").write_text(with_("roc_auc", 0.6).model_dump_json())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.pipeline.gate",
            "metrics.json",
            "gate.json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == "gate: roc_auc >= 0.95 failed (0.6); roc_auc >= baseline 0.5 + 0.2 failed (0.6)\n"
    )
    assert not Path("gate.json").exists()


def test_metrics_of_another_shape_are_one_line(project_params: Params, workdir: Path) -> None:
    write_params(workdir, project_params)
    Path("metrics.json").write_text(json.dumps({**GOOD, "roc_auc": "high"}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.pipeline.gate",
            "metrics.json",
            "gate.json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("gate: metrics.json: roc_auc: Input should be a valid number")
