"""The pipeline as a whole: its structure, `dvc repro` end to end, and tables of other shapes."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

from tumor_classifier.metrics import Metrics
from tumor_classifier.params import Params
from tumor_classifier.pipeline import evaluate, gate, split, train, validate

from conftest import ROOT, write_params

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
    validated = validate.check(frame, schema, params.data, params.validate_)
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


@pytest.mark.score("I3")
def test_dvc_repro_runs_the_whole_pipeline_on_the_shipped_data(
    tmp_path: Path, project_params: Params
) -> None:
    """`make train` in a copy of the project: every stage runs, in order, from data to gate."""
    for name in ("dvc.yaml", "data/raw.csv", "data/schema.yaml", "src"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    # The shipped params with a smaller search: the test is of the plumbing, not of the tuning.
    search = project_params.train.search.model_copy(update={"cv_folds": 2})
    write_params(
        tmp_path,
        project_params.model_copy(
            update={
                "train": project_params.train.model_copy(update={"search": search}),
                "evaluate": project_params.evaluate.model_copy(update={"permutation_repeats": 1}),
            }
        ),
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "--quiet"], cwd=tmp_path, check=True, env=env)
    result = subprocess.run([*dvc, "repro"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = re.findall(r"Running stage '(\w+)'", result.stdout)
    assert set(ran) == set(PIPELINE["stages"])
    assert json.loads((tmp_path / "reports/gate.json").read_text())["passed"] is True
    model = joblib.load(tmp_path / "models/model.joblib")
    test = pd.read_parquet(tmp_path / "data/split/test.parquet")
    predicted = model.predict(test.drop(columns=project_params.data.target))
    assert set(predicted) == set(test[project_params.data.target])
    again = subprocess.run([*dvc, "repro"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "Data and pipelines are up to date." in again.stdout
