"""Export stage: ONNX agrees with scikit-learn, or the service falls back to scikit-learn."""

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest

from tumor_classifier.params import Params
from tumor_classifier.pipeline import export, split, train

from conftest import write_params


@pytest.mark.score("Mon3")
@pytest.mark.parametrize(
    ("dataset", "p"), [("customers", "customers_params"), ("wine", "wine_params")]
)
def test_onnx_agrees_with_scikit_learn(
    dataset: str, p: str, request: pytest.FixtureRequest
) -> None:
    frame: pd.DataFrame = request.getfixturevalue(dataset)
    params: Params = request.getfixturevalue(p)
    train_rows, test_rows = split.split(frame, params.data.target, params.split)
    model = train.fit(train_rows, params.data, params.train).model
    onnx, report = export.export(model, test_rows, params.data, params.export)
    assert onnx is not None
    assert report["exported"]
    assert report["same_labels"]
    assert report["max_probability_difference"] <= params.export.tolerance


def test_an_estimator_without_a_converter_falls_back(
    customers: pd.DataFrame, customers_params: Params
) -> None:
    p = customers_params.train.model_copy(
        update={
            "estimator": "sklearn.neighbors.NearestCentroid",
            "fixed": {},
            "search": customers_params.train.search.model_copy(
                update={"space": {"shrink_threshold": [None]}, "scoring": "accuracy"}
            ),
        }
    )
    train_rows, test_rows = split.split(customers, "churned", customers_params.split)
    model = train.fit(train_rows, customers_params.data, p).model
    onnx, report = export.export(model, test_rows, customers_params.data, customers_params.export)
    assert onnx is None
    assert report["exported"] is False
    assert report["reason"]


def test_main_writes_the_model_and_its_parity(
    customers: pd.DataFrame, customers_params: Params, workdir: Path
) -> None:
    write_params(workdir, customers_params)
    train_rows, test_rows = split.split(customers, "churned", customers_params.split)
    joblib.dump(
        train.fit(train_rows, customers_params.data, customers_params.train).model, "model.joblib"
    )
    test_rows.to_parquet("test.parquet")
    export.main(["model.joblib", "test.parquet", "onnx"])
    assert Path("onnx/model.onnx").stat().st_size > 0
    assert json.loads(Path("onnx/parity.json").read_text())["exported"] is True


def test_switched_off(customers: pd.DataFrame, customers_params: Params) -> None:
    off = customers_params.export.model_copy(update={"onnx": False})
    onnx, report = export.export(None, customers, customers_params.data, off)
    assert onnx is None
    assert report == {"exported": False, "reason": "export.onnx is false"}


def test_a_regression_exports_within_its_tolerance_and_not_beyond(
    diabetes: pd.DataFrame, diabetes_params: Params
) -> None:
    p = diabetes_params
    train_rows, test_rows = split.split(diabetes, p.data.target, p.split, "regression")
    model = train.fit(train_rows, p.data, p.train).model
    onnx, report = export.export(model, test_rows, p.data, p.export)
    assert onnx is not None
    assert report["exported"]
    assert 0 < report["max_prediction_difference"] <= p.export.regression_tolerance
    # float32 inside ONNX Runtime: a tolerance tighter than its rounding refuses the export.
    tight = p.export.model_copy(update={"regression_tolerance": 1e-9})
    onnx, report = export.export(model, test_rows, p.data, tight)
    assert onnx is None
    assert report["reason"] == "ONNX disagrees with scikit-learn"
    assert report["max_prediction_difference"] > 1e-9
