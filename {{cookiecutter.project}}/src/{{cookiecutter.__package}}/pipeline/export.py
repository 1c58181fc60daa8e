"""Export stage: the fitted pipeline as ONNX for the service's fast path, kept only if it agrees:
the same labels and probabilities within the tolerance, or a regression's predictions within it."""

import json
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import is_regressor
from sklearn.pipeline import Pipeline

from .. import cli
from ..data import feature_columns, model_input, read_table, text
from ..params import DataParams, ExportParams, load


def convert(model: Pipeline, columns: list[str], numeric: list[str]) -> bytes:
    """ONNX with one input per column, in the table's order: float32 numbers (ONNX's Imputer
    needs them) and text. skl2onnx may rename inputs (`a/b` is not a valid name): feed by order."""
    inputs = [
        (c, FloatTensorType([None, 1]) if c in numeric else StringTensorType([None, 1]))
        for c in columns
    ]
    regression = is_regressor(model)
    # A classifier's probabilities as one array, not a list of maps; a regressor has no such option.
    onnx = to_onnx(model, initial_types=inputs, options={} if regression else {"zipmap": False})
    # What the service and `make predict` would otherwise unpickle scikit-learn for.
    described = {
        "task": "regression" if regression else "classification",
        "classes": [] if regression else [str(c) for c in model.classes_],
        "columns": columns,
    }
    for key, value in described.items():
        onnx.metadata_props.add(key=key, value=json.dumps(value))
    return bytes(onnx.SerializeToString())


def parity(model: Pipeline, onnx: bytes, x: Any, numeric: list[str]) -> dict[str, Any]:
    """How far ONNX Runtime's probabilities and labels (or a regression's predictions) are from
    scikit-learn's on the same rows."""
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    arrays = [
        (x[c].to_numpy(np.float32) if c in numeric else text(x[c].to_numpy())).reshape(-1, 1)
        for c in x.columns
    ]
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    if is_regressor(model):
        (predicted,) = session.run(["variable"], feeds)
        difference = np.abs(predicted.ravel() - model.predict(x)).max()
        return {"rows": len(x), "max_prediction_difference": float(difference)}
    labels, proba = session.run(["label", "probabilities"], feeds)
    return {
        "rows": len(x),
        "max_probability_difference": float(np.abs(proba - model.predict_proba(x)).max()),
        "same_labels": bool((labels == model.predict(x)).all()),
    }


def export(
    model: Pipeline, test: pd.DataFrame, data: DataParams, params: ExportParams
) -> tuple[bytes | None, dict[str, Any]]:
    """The ONNX model and its parity report, or None and the reason it is not used."""
    if not params.onnx:
        return None, {"exported": False, "reason": "export.onnx is false"}
    numeric, categorical = feature_columns(list(test.columns), data)
    x = model_input(test, numeric, categorical)
    try:
        onnx = convert(model, list(x.columns), numeric)
    except (RuntimeError, NameError, TypeError, ValueError) as error:
        # skl2onnx has no converter for every estimator; the service then uses scikit-learn.
        return None, {"exported": False, "reason": f"{type(error).__name__}: {str(error)[:300]}"}
    report = parity(model, onnx, x, numeric)
    if is_regressor(model):
        agrees = report["max_prediction_difference"] <= params.regression_tolerance
    else:
        agrees = report["same_labels"] and report["max_probability_difference"] <= params.tolerance
    if not agrees:
        return None, {"exported": False, "reason": "ONNX disagrees with scikit-learn", **report}
    return onnx, {"exported": True, **report}


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "model", "test", "out")
    params = load()
    onnx, report = export(
        joblib.load(args.model), read_table(args.test), params.data, params.export
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.onnx").unlink(missing_ok=True)
    if onnx is not None:
        (args.out / "model.onnx").write_bytes(onnx)
    else:
        print(f"export: no ONNX model, the service will use scikit-learn ({report['reason']})")
    (args.out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
