"""The model as an HTTP service: a strict contract from the training schema, ONNX when exported."""

import gc
import json
import logging
import math
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from .. import NAME, contract
from .guards import ClientMistakes, Guard
from .monitor import OnlineDrift
from .predict import Predictor

# The newest model `make bento` stored; `bentoml build` packs that exact version into the Bento.
MODEL = bentoml.models.BentoModel(f"{NAME}:latest")
FOLDER = Path(MODEL.stored.path)
SETTINGS: dict[str, Any] = json.loads((FOLDER / "serve.json").read_text())
FEATURES = contract.load_text((FOLDER / "contract.json").read_text())
Record = contract.record_model(FEATURES, SETTINGS["accept_unseen_categories"])
Records = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS["max_records"])]  # type: ignore[valid-type]

PREDICTIONS = bentoml.metrics.Counter(
    name="model_predictions", documentation="Predictions served, by class", labelnames=["class"]
)
SCORE = bentoml.metrics.Histogram(
    name="model_prediction_score",
    documentation="Probability of the predicted class",
    buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
INFO = bentoml.metrics.Gauge(
    name="model_info",
    documentation="The model being served (value 1)",
    labelnames=["model_version", "backend"],
    multiprocess_mode="max",
)
DRIFT = bentoml.metrics.Gauge(
    name="model_feature_drift",
    documentation="Population stability index of each feature over the recent requests",
    labelnames=["feature"],
    multiprocess_mode="max",
)
PREDICTION_DRIFT = bentoml.metrics.Gauge(
    name="model_prediction_drift",
    documentation="Population stability index of the predicted classes over the recent requests",
    multiprocess_mode="max",
)


# A share of the requests, one JSON object per record on stdout: what `make current` collects from
# the log store and `make drift` compares with the training reference.
REQUESTS = logging.getLogger(f"{NAME}.requests")
# The gauges move every few requests: the index needs counts, not every single record.
DRIFT_EVERY = 16


# bentoml exports IODescriptor lazily, so mypy sees Any.
class Request(bentoml.IODescriptor):  # type: ignore[misc]
    """The body: {"records": [...]}, and nothing else beside it."""

    model_config = ConfigDict(extra="forbid")
    records: Records


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class Predictions(BaseModel):
    model_version: str
    predictions: list[Prediction]


@bentoml.service(
    name=NAME,
    workers="cpu_count",
    traffic={"timeout": 10},
    # Access logs and request tracing cost more than the model; turn them on where they are read.
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ".*"},
)
class Classifier:
    """Class probabilities for records that meet the training schema."""

    model = MODEL

    def __init__(self) -> None:
        self.predictor = Predictor(FEATURES, FOLDER / "model.joblib", FOLDER / "model.onnx")
        self.version = SETTINGS["model_version"]
        self.counted = {c: PREDICTIONS.labels(**{"class": c}) for c in self.predictor.classes}
        INFO.labels(model_version=self.version, backend=self.predictor.backend).set(1)
        stats = json.loads((FOLDER / "reference.json").read_text())
        self.drift = OnlineDrift(FEATURES, stats, SETTINGS["window"])
        self.drift_gauges = {f.name: DRIFT.labels(feature=f.name) for f in FEATURES}
        self.requests = 0
        # Set up here, not at import: BentoML configures logging in between, disabling old loggers.
        REQUESTS.disabled, REQUESTS.propagate = False, False
        REQUESTS.setLevel(logging.INFO)
        REQUESTS.handlers = [logging.StreamHandler(sys.stdout)]
        logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientMistakes())
        # Everything loaded so far lives as long as the worker: keep it out of the garbage
        # collector's full scans, which otherwise add 100+ ms pauses to the slowest requests.
        gc.collect()
        gc.freeze()

    @bentoml.api(input_spec=Request)
    async def predict(self, records: Records) -> Predictions:
        """Predict the class of each record, with every class's probability."""
        columns = {f.name: [getattr(r, f.name) for r in records] for f in FEATURES}
        proba = self.predictor.proba(columns)
        labels = self.predictor.labels(proba)
        classes = self.predictor.classes
        predictions = []
        for label, row in zip(labels, proba.tolist(), strict=True):
            self.counted[label].inc()
            SCORE.observe(max(row))
            probabilities = dict(zip(classes, row, strict=True))
            predictions.append(Prediction(label=label, probabilities=probabilities))
        self.monitor(records, columns, predictions)
        return Predictions(model_version=self.version, predictions=predictions)

    def monitor(
        self, records: list[Any], columns: dict[str, list[Any]], predictions: list[Prediction]
    ) -> None:
        """Feed the drift gauges; log a share of the requests."""
        labels = [p.label for p in predictions]
        self.drift.observe(columns, labels)
        self.requests += 1
        if self.requests % DRIFT_EVERY == 0:
            indices = self.drift.indices()
            if not math.isnan(indices["prediction"]):  # the window holds enough records
                for name, gauge in self.drift_gauges.items():
                    gauge.set(indices[name])
                PREDICTION_DRIFT.set(indices["prediction"])
        if random.random() < SETTINGS["log_sample"]:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            for record, prediction in zip(records, predictions, strict=True):
                probabilities = {f"probability_{c}": p for c, p in prediction.probabilities.items()}
                line = {**record.model_dump(), "prediction": prediction.label, **probabilities}
                REQUESTS.info(json.dumps(line | {"model_version": self.version, "time": now}))


# The decorator made Classifier a bentoml Service, which mypy cannot see.
Classifier.add_asgi_middleware(Guard, max_body_bytes=SETTINGS["max_body_bytes"])  # type: ignore[attr-defined]
