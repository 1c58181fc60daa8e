"""The model as an HTTP service: a strict contract from the training schema, ONNX when exported;
a class with its probabilities, or a regression's number."""

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
import numpy as np
from bentoml import get_current_service
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from .. import NAME, contract
from . import docs, transport
from .guards import Guard, bound_endpoint_labels, cheaper_request_timeout
from .monitor import OnlineDrift
from .predict import Predictor

# The newest model `make bento` stored; `bentoml build` packs that exact version into the Bento.
MODEL = bentoml.models.BentoModel(f"{NAME}:latest")
FOLDER = Path(MODEL.stored.path)
SETTINGS: dict[str, Any] = json.loads((FOLDER / "serve.json").read_text())
FEATURES = contract.load_text((FOLDER / "contract.json").read_text())
REFUSE = SETTINGS["out_of_range"] == "refuse"
REGRESSION = SETTINGS.get("task") == "regression"  # older models stored no task: classifiers
Record = contract.record_model(FEATURES, SETTINGS["accept_unseen_categories"], REFUSE)
Records = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS["max_records"])]  # type: ignore[valid-type]
TIMEOUT = 10  # seconds for a whole request; the guards' read_timeout is shorter

PREDICTIONS = bentoml.metrics.Counter(
    name="model_predictions", documentation="Predictions served, by class", labelnames=["class"]
)
SCORE = bentoml.metrics.Histogram(
    name="model_prediction_score",
    documentation="Probability of the predicted class",
    buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
OUT_OF_RANGE = bentoml.metrics.Counter(
    name="model_out_of_range_values",
    documentation="Numbers answered outside their training range, by feature (out_of_range: flag)",
    labelnames=["feature"],
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
    documentation="Population stability index of the predictions (classes, or a regression's "
    "numbers in the training deciles) over the recent requests",
    multiprocess_mode="max",
)
# A regression's answers, in buckets at the deciles of its answers on the training data.
VALUE = (
    bentoml.metrics.Histogram(
        name="model_prediction_value",
        documentation="A regression's predicted value",
        buckets=json.loads((FOLDER / "reference.json").read_text())["prediction"]["edges"],
    )
    if REGRESSION
    else None
)


# A share of the requests, one JSON object per record on stdout: what `make current` collects from
# the log store and `make drift` compares with the training reference.
REQUESTS = logging.getLogger(f"{NAME}.requests")
# The drift window takes the records of a few requests at once, and the gauges move then: the
# index needs counts, not every single record, and one update of many records costs about as
# much as one of a single record.
DRIFT_EVERY = 16


# bentoml exports IODescriptor lazily, so mypy sees Any.
class Request(bentoml.IODescriptor):  # type: ignore[misc]
    """The body: {"records": [...]}, and nothing else beside it."""

    model_config = ConfigDict(extra="forbid")
    records: Records

    @classmethod
    async def from_http_request(cls, request: HTTPRequest, serde: Any) -> "Request":
        """BentoML's hook for parsing a request (_bentoml_sdk/io_models.py): the guard's parse
        and validation (answer() below), should BentoML's own path ever take a body."""
        return contract.validate_json(cls, await request.body(), FEATURES)


FLAGGED = (
    "The record's features outside their training range, answered all the same "
    "(serve.out_of_range: flag); with refuse, such a record gets a 400 instead"
)


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    out_of_range: list[str] = Field(default=[], description=FLAGGED)


class Predictions(BaseModel):
    """The answer's documented shape: answer() writes its JSON without building these models (as
    estimate() does of Estimates)."""

    model_version: str
    predictions: list[Prediction]


class Estimate(BaseModel):
    prediction: float
    out_of_range: list[str] = Field(default=[], description=FLAGGED)


class Estimates(BaseModel):
    model_version: str
    predictions: list[Estimate]


# The answer, and so the OpenAPI document, follows the model: classes or numbers.
Answer = Estimates if REGRESSION else Predictions
REGRESSED = "A predicted number for records that meet the training schema."


@bentoml.service(
    name=NAME,
    workers="cpu_count",
    traffic={"timeout": TIMEOUT},
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
        self.unseen: dict[str, list[Any]] = {f.name: [] for f in FEATURES}  # by the window yet
        self.unseen_labels: list[Any] = []  # classes, or a regression's numbers
        self.drift_gauges = {f.name: DRIFT.labels(feature=f.name) for f in FEATURES}
        self.ranges = contract.Ranges(FEATURES)
        self.out_of_range = [OUT_OF_RANGE.labels(feature=name) for name in self.ranges.names]
        self.requests = 0
        # Set up here, not at import: BentoML configures logging in between, disabling old loggers.
        REQUESTS.disabled, REQUESTS.propagate = False, False
        REQUESTS.setLevel(logging.INFO)
        REQUESTS.handlers = [logging.StreamHandler(sys.stdout)]
        # Everything loaded so far lives as long as the worker: keep it out of the garbage
        # collector's full scans, which otherwise add 100+ ms pauses to the slowest requests.
        gc.collect()
        gc.freeze()

    # The OpenAPI document shows the Request and the Answer; the guard answers POST /predict with
    # answer() (BentoML's request path costs more than the model), this API stays its document.
    @bentoml.api(input_spec=Request, output_spec=Answer)
    async def predict(self, records: Records) -> Response:
        """Predict the class of each record, with every class's probability (a regression: the
        predicted number)."""
        return Response(self.predicted(records), media_type="application/json")

    def answer(self, body: bytes) -> bytes:
        """POST /predict's answer to the body the guard read: the Request's one parse and
        validation, then the prediction; a ValidationError is the guard's 400."""
        return self.predicted(contract.validate_json(Request, body, FEATURES).records)

    def predicted(self, records: list[Any]) -> bytes:
        """The answer's JSON (written once: BentoML would validate a returned model again, dump
        it to a dict and then to JSON); the predictions counted and watched for drift."""
        columns = {f.name: [getattr(r, f.name) for r in records] for f in FEATURES}
        if REGRESSION:
            return self.estimate(records, columns)
        proba = self.predictor.proba(columns)
        finite = np.isfinite(proba).all(axis=1)
        if not finite.all():
            raise no_answer(np.flatnonzero(~finite).tolist())
        flagged = [[]] * len(records) if REFUSE else self.flag(columns, len(records))
        labels = self.predictor.labels(proba)
        rows = proba.tolist()
        for label, row in zip(labels, rows, strict=True):
            self.counted[label].inc()
            SCORE.observe(max(row))
        self.monitor(records, columns, labels, rows)
        return self.classified(labels, rows, flagged)

    def classified(
        self, labels: list[str], rows: list[list[float]], flagged: list[list[str]]
    ) -> bytes:
        """The Predictions document as JSON."""
        classes = self.predictor.classes
        predictions = [
            {
                "label": label,
                "probabilities": dict(zip(classes, row, strict=True)),
                "out_of_range": outside,
            }
            for label, row, outside in zip(labels, rows, flagged, strict=True)
        ]
        return json.dumps({"model_version": self.version, "predictions": predictions}).encode()

    def estimate(self, records: list[Any], columns: dict[str, list[Any]]) -> bytes:
        """A regression's answer, the Estimates document as JSON: one number per record, observed
        by the value histogram."""
        values = self.predictor.values(columns)
        finite = np.isfinite(values)
        if not finite.all():
            raise no_answer(np.flatnonzero(~finite).tolist())
        flagged = [[]] * len(records) if REFUSE else self.flag(columns, len(records))
        numbers = values.tolist()
        for value in numbers:
            VALUE.observe(value)  # type: ignore[union-attr]
        self.monitor(records, columns, numbers, [[] for _ in numbers])
        predictions = [
            {"prediction": value, "out_of_range": outside}
            for value, outside in zip(numbers, flagged, strict=True)
        ]
        return json.dumps({"model_version": self.version, "predictions": predictions}).encode()

    def flag(self, columns: dict[str, list[Any]], rows: int) -> list[list[str]]:
        """Each record's features outside their range, counted by feature."""
        outside = self.ranges.outside(columns, rows)
        for counter, n in zip(self.out_of_range, np.count_nonzero(outside, axis=0), strict=True):
            if n:
                counter.inc(int(n))
        return self.ranges.flagged(outside)

    def monitor(
        self,
        records: list[Any],
        columns: dict[str, list[Any]],
        labels: list[Any],
        rows: list[list[float]],
    ) -> None:
        """Feed the drift gauges; log a share of the requests."""
        for name, values in columns.items():
            self.unseen[name].extend(values)
        self.unseen_labels.extend(labels)
        self.requests += 1
        if self.requests % DRIFT_EVERY == 0:
            self.drift.observe(self.unseen, self.unseen_labels)
            for values in self.unseen.values():
                values.clear()
            self.unseen_labels.clear()
            indices = self.drift.indices()
            if not math.isnan(indices["prediction"]):  # the window holds enough records
                for name, gauge in self.drift_gauges.items():
                    gauge.set(indices[name])
                PREDICTION_DRIFT.set(indices["prediction"])
        if random.random() < SETTINGS["log_sample"]:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            classes = self.predictor.classes  # a regression has none
            for record, label, row in zip(records, labels, rows, strict=True):
                probabilities = {f"probability_{c}": p for c, p in zip(classes, row, strict=True)}
                line = {**record.model_dump(), "prediction": label, **probabilities}
                REQUESTS.info(json.dumps(line | {"model_version": self.version, "time": now}))


def no_answer(rows: list[int]) -> ValidationError:
    """A 400 for records the model gives no finite probability for: never a NaN in an answer."""
    message = "the model gives no finite probability for this record: its values are too far "
    message += "from the training data"
    error = PydanticCustomError("non_finite_prediction", message)
    details: list[InitErrorDetails] = [
        {"type": error, "loc": ("records", row), "input": None} for row in rows
    ]
    return ValidationError.from_exception_data("Predictions", details)


def answer(body: bytes) -> bytes:
    """The guard's answer to POST /predict, from this worker's instance of the service (imported
    by name: `bentoml.` resolves its names lazily, tens of microseconds on every call)."""
    service: Classifier = get_current_service()
    return service.answer(body)


# The decorator made Classifier a bentoml Service, which mypy cannot see.
SERVICE: Any = Classifier
ROUTES = [SERVICE.apis["predict"].route]  # the route the guard answers with answer()
# BentoML's supported extension point for ASGI middleware (Service.add_asgi_middleware).
SERVICE.add_asgi_middleware(
    Guard,
    routes=ROUTES,
    answer=answer,
    max_body_bytes=SETTINGS["max_body_bytes"],
    read_timeout=SETTINGS["read_timeout"],
)
SERVICE.mount_asgi_app(
    docs.app(
        NAME,
        lambda: docs.openapi(
            SERVICE.openapi_spec.asdict(),
            REGRESSED if REGRESSION else (SERVICE.inner.__doc__ or "").strip(),
            SETTINGS["model_version"],
            docs.refusals(SETTINGS["max_body_bytes"], SETTINGS["read_timeout"]),
        ),
    ),
    path="/",
)
bound_endpoint_labels(ROUTES)
cheaper_request_timeout()
transport.install(SETTINGS["read_timeout"])
