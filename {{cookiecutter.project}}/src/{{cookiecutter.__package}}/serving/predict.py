"""Predictions for requests and for batch files: one code path, ONNX Runtime when exported; class
probabilities from a classifier, a number from a regressor."""

import argparse
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, get_args

import joblib
import numpy as np
import pandas as pd

from .. import cli, contract
from ..contract import Feature
from ..data import TableWriter, model_input, read_chunks, text
from ..params import load

Columns = Mapping[str, Sequence[Any] | np.ndarray]
CHUNK_ROWS = 100_000  # rows `make predict` holds at a time: its memory does not grow with the file
Keep = Literal["all", "others"]  # the input columns a prediction file carries (--keep)


def add_keep(parser: argparse.ArgumentParser) -> None:
    """`--keep`, the input columns a prediction file carries (`make predict`, `make batch`): all,
    as BigQuery's ML.PREDICT and Vertex AI's batch predictions return them; or the others, those
    the model does not read (identifiers, dates, a label), as SageMaker's batch transform and
    `mlflow models predict` leave the features out: half a wide table's output, a fifth of the
    CPU time."""
    parser.add_argument(
        "--keep",
        choices=get_args(Keep),
        default="all",
        help="input columns beside the predictions: all, or those the model does not read",
    )


class Predictor:
    """Class probabilities (or a regression's predictions) from column-wise inputs, by ONNX
    Runtime or by scikit-learn."""

    def __init__(self, features: list[Feature], model_path: Path, onnx_path: Path | None) -> None:
        self.features = features
        self.model_path = model_path
        if not model_path.exists():
            raise cli.UserError(f"{model_path}: no model there; run `make train` first")
        self.session = None
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
        # The export writes the classes and columns into the ONNX model: then scikit-learn (seconds
        # to import and unpickle) is never loaded. An older export has them in the pickle alone.
        described = self.session.get_modelmeta().custom_metadata_map if self.session else {}
        if "classes" in described and "columns" in described:
            self.regression = json.loads(described.get("task", "null")) == "regression"
            self.classes = [str(c) for c in json.loads(described["classes"])]
            trained_on = [str(c) for c in json.loads(described["columns"])]
        else:
            # A regressor has no classes: it answers one number per record (`values`).
            self.regression = not hasattr(self.model, "classes_")
            self.classes = [] if self.regression else [str(c) for c in self.model.classes_]
            trained_on = [str(c) for c in self.model.feature_names_in_]
        if trained_on != [f.name for f in features]:
            raise cli.UserError(
                "the model was trained on other columns than the schema lists: run `make train`"
            )
        self.class_array = np.asarray(self.classes, dtype=object)

    @functools.cached_property
    def model(self) -> Any:
        """The scikit-learn model, unpickled when first needed."""
        return joblib.load(self.model_path)

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.session else "scikit-learn"

    def proba(self, columns: Columns) -> np.ndarray:
        """Probabilities, one row per record and one column per class (in `classes` order)."""
        if self.session is None:
            return np.asarray(self.model.predict_proba(self.frame(columns)))
        return np.asarray(self.session.run(["probabilities"], self.feeds(columns))[0], np.float64)

    def values(self, columns: Columns) -> np.ndarray:
        """A regressor's prediction of each record."""
        if self.session is None:
            return np.asarray(self.model.predict(self.frame(columns)), dtype=np.float64)
        (values,) = self.session.run(["variable"], self.feeds(columns))
        return np.asarray(values, dtype=np.float64).ravel()

    def frame(self, columns: Columns) -> pd.DataFrame:
        """scikit-learn's input: the model_input of the columns."""
        numeric = [f.name for f in self.features if f.numeric]
        categorical = [f.name for f in self.features if not f.numeric]
        frame = pd.DataFrame({f.name: columns[f.name] for f in self.features})
        return model_input(frame, numeric, categorical)

    def feeds(self, columns: Columns) -> dict[str, np.ndarray]:
        """ONNX Runtime's input: one column per input, float32 numbers and text."""
        inputs = list(zip(self.inputs, self.features, strict=True))
        numeric = [(name, f.name) for name, f in inputs if f.numeric]
        # The numbers in one conversion, each input a (rows, 1) view of it: half the time of a
        # conversion per column, on a one-record request (22 us against 52 for 30 features).
        block = np.asarray([columns[feature] for _, feature in numeric], np.float32)[..., None]
        feeds = dict(zip((name for name, _ in numeric), block, strict=True))
        for name, f in inputs:
            if not f.numeric:
                feeds[name] = text(columns[f.name]).reshape(-1, 1)
        return feeds

    def labels(self, proba: np.ndarray) -> list[str]:
        """The most probable class of each row."""
        return list(self.class_array[proba.argmax(axis=1)])

    def label_column(self, proba: np.ndarray) -> pd.Categorical:
        """The most probable class of each row as a column of `make predict`: a categorical, whose
        codes are the argmax itself. An array of names takes a reference per row, and Arrow then
        encodes each name again (make predict 5% slower on a million rows)."""
        return pd.Categorical.from_codes(proba.argmax(axis=1), categories=self.classes)


def predict_frame(
    predictor: Predictor,
    frame: pd.DataFrame,
    ranges: contract.Ranges | None = None,
    keep: Keep = "all",
) -> pd.DataFrame:
    """The input's columns (`keep`: all, or the others, those the model does not read) with the
    predicted class and each class's probability (a regression: the predicted number); with
    ranges, the features of each row outside their training range, comma-separated."""
    columns = {f.name: frame[f.name].to_numpy() for f in predictor.features}
    if predictor.regression:
        values = predictor.values(columns)
        proba = values.reshape(-1, 1)
    else:
        proba = predictor.proba(columns)
    # All the numbers at once first: row by row takes 30 times as long (1.1 ms a 100,000-row chunk).
    if not np.isfinite(proba).all():
        unanswered = np.flatnonzero(~np.isfinite(proba).all(axis=1))
        rows = ", ".join(str(int(frame.index[i]) + 1) for i in unanswered[: contract.SHOWN_ROWS])
        raise cli.UserError(
            f"the model gives no finite {'prediction' if predictor.regression else 'probability'} "
            f"for rows {rows}"
            f"{' and more' if len(unanswered) > contract.SHOWN_ROWS else ''}: "
            "their values are too far from the training data"
        )
    answers: dict[str, Any] = {
        "prediction": proba[:, 0] if predictor.regression else predictor.label_column(proba)
    }
    answers.update({f"probability_{name}": proba[:, i] for i, name in enumerate(predictor.classes)})
    if ranges is not None:
        flagged = ranges.flagged(ranges.outside(columns, len(frame)))
        answers["out_of_range"] = [",".join(names) for names in flagged]
    # Beside the input columns, which a shallow copy shares rather than copies (an input column of
    # the same name is replaced); concat would copy them all into one block.
    if keep == "all":
        out = frame.copy(deep=False)
    else:
        features = {f.name for f in predictor.features}
        out = frame[[c for c in frame.columns if c not in features]].copy()
    for name, values in answers.items():
        out[name] = values
    return out


def checked(
    chunks: Iterator[pd.DataFrame], features: list[Feature], accept_unseen: bool, refuse: bool
) -> Iterator[pd.DataFrame]:
    """The chunks, each checked against the contract, with row numbers that count from the first
    row of the file, whatever the chunk."""
    rows = 0
    for chunk in chunks:
        chunk.index += rows
        contract.check_frame(chunk, features, accept_unseen, refuse, first_row=rows + 1)
        rows += len(chunk)
        yield chunk


def ahead(chunks: Iterator[pd.DataFrame], threads: Executor) -> Iterator[pd.DataFrame]:
    """The same chunks, the next one made in a thread while the caller works on this one."""
    following = threads.submit(next, chunks, None)
    while (chunk := following.result()) is not None:
        following = threads.submit(next, chunks, None)
        yield chunk


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="predict", description=__doc__)
    parser.add_argument("input", type=Path, help="CSV, Parquet or JSON lines")
    parser.add_argument("output", type=Path, help="CSV, Parquet or JSON lines")
    parser.add_argument("--model", type=Path, default=Path("models/model.joblib"))
    parser.add_argument("--onnx", type=Path, default=Path("models/onnx/model.onnx"))
    parser.add_argument("--schema", type=Path, default=Path("data/schema.yaml"))
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows read at a time")
    add_keep(parser)
    args = parser.parse_args(argv)
    params = load()
    features = contract.from_schema(args.schema.read_text(), params.data)
    refuse = params.serve.out_of_range == "refuse"
    ranges = None if refuse else contract.Ranges(features)
    chunks = checked(
        read_chunks(
            args.input, params.data, args.chunk_rows, [f.name for f in features if f.numeric]
        ),
        features,
        params.serve.accept_unseen_categories,
        refuse,
    )
    predictor: Predictor | None = None
    # While a chunk is predicted, the next is read and checked and the one before written, each in
    # a thread of its own (Arrow, Parquet and numpy leave the GIL): three chunks in memory at most.
    # Leaving the block waits for the read and the write in flight.
    with TableWriter(args.output) as out, ThreadPoolExecutor(2) as threads:
        written: Future[None] | None = None
        for chunk in ahead(chunks, threads):
            # Loaded once the first rows pass: a broken input is named before a missing model.
            predictor = predictor or Predictor(features, args.model, args.onnx)
            predicted = predict_frame(predictor, chunk, ranges, args.keep)
            if written is not None:
                written.result()
            written = threads.submit(out.write, predicted)
        if written is not None:
            written.result()
        if predictor is None:
            raise cli.UserError(f"{args.input}: no rows to predict")
    print(f"wrote {out.rows} predictions to {args.output} ({predictor.backend})")


if __name__ == "__main__":
    cli.run(main)
