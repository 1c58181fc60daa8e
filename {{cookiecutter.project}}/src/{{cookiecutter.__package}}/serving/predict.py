"""Predictions for requests and for batch files: one code path, ONNX Runtime when exported."""

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from .. import cli, contract
from ..contract import Feature
from ..data import model_input, read_table, text, write_table
from ..params import load

Columns = Mapping[str, Sequence[Any] | np.ndarray]


class Predictor:
    """Class probabilities from column-wise inputs, by ONNX Runtime or by scikit-learn."""

    def __init__(self, features: list[Feature], model_path: Path, onnx_path: Path | None) -> None:
        self.features = features
        self.model = joblib.load(model_path)
        self.classes = [str(c) for c in self.model.classes_]
        self.session = None
        trained_on = [str(c) for c in self.model.feature_names_in_]
        if trained_on != [f.name for f in features]:
            raise cli.UserError(
                "the model was trained on other columns than the schema lists: run `make train`"
            )
        if onnx_path is not None and onnx_path.exists():
            import onnxruntime as ort

            options = ort.SessionOptions()
            # One thread per worker: the service scales with workers, not with threads per call.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                onnx_path.read_bytes(), options, providers=["CPUExecutionProvider"]
            )
            # The export orders inputs as the training columns; their names may be sanitised.
            self.inputs = [i.name for i in self.session.get_inputs()]

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.session else "scikit-learn"

    def proba(self, columns: Columns) -> np.ndarray:
        """Probabilities, one row per record and one column per class (in `classes` order)."""
        if self.session is None:
            numeric = [f.name for f in self.features if f.numeric]
            categorical = [f.name for f in self.features if not f.numeric]
            frame = pd.DataFrame({f.name: columns[f.name] for f in self.features})
            return np.asarray(self.model.predict_proba(model_input(frame, numeric, categorical)))
        feeds = {
            name: (
                np.asarray(columns[f.name], dtype=np.float32)
                if f.numeric
                else text(columns[f.name])
            ).reshape(-1, 1)
            for name, f in zip(self.inputs, self.features, strict=True)
        }
        return np.asarray(self.session.run(["probabilities"], feeds)[0], dtype=np.float64)

    def labels(self, proba: np.ndarray) -> list[str]:
        return [self.classes[i] for i in proba.argmax(axis=1)]


def predict_frame(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """The input rows with the predicted class and each class's probability."""
    proba = predictor.proba({f.name: frame[f.name].to_numpy() for f in predictor.features})
    out = frame.copy()
    out["prediction"] = predictor.labels(proba)
    for i, name in enumerate(predictor.classes):
        out[f"probability_{name}"] = proba[:, i]
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="predict", description=__doc__)
    parser.add_argument("input", type=Path, help="CSV, Parquet or JSON lines")
    parser.add_argument("output", type=Path, help="CSV, Parquet or JSON lines")
    parser.add_argument("--model", type=Path, default=Path("models/model.joblib"))
    parser.add_argument("--onnx", type=Path, default=Path("models/onnx/model.onnx"))
    parser.add_argument("--schema", type=Path, default=Path("data/schema.yaml"))
    args = parser.parse_args(argv)
    params = load()
    features = contract.from_schema(args.schema.read_text(), params.data)
    frame = read_table(args.input, params.data)
    contract.check_frame(frame, features, params.serve.accept_unseen_categories)
    predictor = Predictor(features, args.model, args.onnx)
    write_table(predict_frame(predictor, frame), args.output)
    print(f"wrote {len(frame)} predictions to {args.output} ({predictor.backend})")


if __name__ == "__main__":
    cli.run(main)
