"""Batch inference: the service's prediction code over files, with either backend."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import Served, write_params
from tumor_classifier import contract
from tumor_classifier.cli import UserError
from tumor_classifier.data import write_table
from tumor_classifier.params import load
from tumor_classifier.serving import predict


@pytest.fixture(scope="module")
def predictors(served: Served) -> tuple[predict.Predictor, predict.Predictor]:
    p = load(served.folder / "params.yaml")
    features = contract.from_schema((served.folder / "schema.yaml").read_text(), p.data)
    model = served.folder / "model.joblib"
    return (
        predict.Predictor(features, model, served.folder / "onnx/model.onnx"),
        predict.Predictor(features, model, None),
    )


def test_onnx_and_scikit_learn_backends_agree(
    served: Served, predictors: tuple[predict.Predictor, predict.Predictor]
) -> None:
    fast, exact = predictors
    assert (fast.backend, exact.backend) == ("onnxruntime", "scikit-learn")
    columns = {f.name: served.test[f.name].to_numpy() for f in fast.features}
    np.testing.assert_allclose(fast.proba(columns), exact.proba(columns), atol=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_main_reads_and_writes_each_format(served: Served, workdir: Path, suffix: str) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    rows = served.test.drop(columns="churned")
    source = workdir / f"in{suffix}"
    write_table(rows, source)
    predict.main(
        [
            str(source),
            f"out{suffix}",
            "--model",
            str(served.folder / "model.joblib"),
            "--onnx",
            str(served.folder / "onnx/model.onnx"),
            "--schema",
            str(served.folder / "schema.yaml"),
        ]
    )
    out = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }[suffix](f"out{suffix}")
    assert len(out) == len(rows)
    assert set(out["prediction"]) <= {"yes", "no"}
    np.testing.assert_allclose(out["probability_yes"] + out["probability_no"], 1, atol=1e-5)


def test_input_breaking_the_contract_is_one_line(served: Served, workdir: Path) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    served.test.drop(columns=["churned", "spend"]).to_csv("in.csv", index=False)
    with pytest.raises(UserError, match="input lacks columns: spend"):
        predict.main(["in.csv", "out.csv", "--schema", str(served.folder / "schema.yaml")])


def test_unknown_output_format(served: Served, workdir: Path) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    served.test.drop(columns="churned").to_csv("in.csv", index=False)
    schema = ["--schema", str(served.folder / "schema.yaml")]
    with pytest.raises(UserError, match=r"out\.xlsx: unsupported format"):
        predict.main(
            ["in.csv", "out.xlsx", "--model", str(served.folder / "model.joblib"), *schema]
        )
