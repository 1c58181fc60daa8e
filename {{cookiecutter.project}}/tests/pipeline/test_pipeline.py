"""The pipeline as a whole: its structure, and tables of other shapes by changing params only."""

import re

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from tumor_classifier.metrics import Metrics
from tumor_classifier.params import Params
from tumor_classifier.pipeline import evaluate, gate, split, train, validate

PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
PACKAGE = "tumor_classifier"


@pytest.mark.parametrize("stage", list(PIPELINE["stages"]))
def test_one_stage_one_module_one_params_section_one_test_file(stage: str) -> None:
    spec = PIPELINE["stages"][stage]
    assert re.match(rf"python -m {PACKAGE}\.pipeline\.{stage} ", spec["cmd"])
    assert f"src/{PACKAGE}/pipeline/{stage}.py" in spec["deps"]
    assert (ROOT / f"tests/pipeline/test_{stage}.py").is_file()
    assert stage in PARAMS
    assert {name.split(".")[0] for name in spec.get("params", [])} <= set(PARAMS)


@pytest.mark.score("D6")
@pytest.mark.parametrize(
    ("dataset", "p"), [("customers", "customers_params"), ("wine", "wine_params")]
)
def test_other_tables_run_through_every_stage(
    dataset: str, p: str, request: pytest.FixtureRequest
) -> None:
    frame: pd.DataFrame = request.getfixturevalue(dataset)
    params: Params = request.getfixturevalue(p)
    schema = validate.infer(frame, params.data, params.validate_.range_margin)
    validated = validate.check(frame, schema, params.data)
    train_rows, test_rows = split.split(validated, params.data.target, params.split)
    fitted = train.fit(train_rows, params.data, params.train)
    metrics, _, _ = evaluate.evaluate(fitted.model, fitted.baseline, test_rows, params)
    loose = params.gate.model_copy(
        update={"min": {"roc_auc": 0.7}, "max": {}, "baseline_margin": 0.1, "slice_floor": 0.5}
    )
    result = gate.verdict(metrics, loose)
    assert result.passed, result


@pytest.mark.score("I1")
def test_same_inputs_same_metrics(cancer: pd.DataFrame, project_params: Params) -> None:
    def run() -> Metrics:
        train_rows, test_rows = split.split(cancer, "diagnosis", project_params.split)
        fitted = train.fit(train_rows, project_params.data, project_params.train)
        return evaluate.evaluate(fitted.model, fitted.baseline, test_rows, project_params)[0]

    assert run() == run()
