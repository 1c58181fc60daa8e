"""The model as an HTTP service: a strict contract from the training schema, ONNX when exported."""

import gc
import json
import logging
import math
import random
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import NAME, contract
from .monitor import OnlineDrift
from .predict import Predictor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
REJECTED = bentoml.metrics.Counter(
    name="model_rejected_requests",
    documentation="Requests refused with a 4xx, by reason",
    labelnames=["reason"],
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


class Guard:
    """ASGI middleware: refuse bodies over the limit with 413 and count each refusal by reason.

    BentoML reads a request body whole and without a limit; this reads at most max_body_bytes.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self.refuse(send, 413, "body_too_large", f"body over {self.limit} bytes")
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        errors = bytearray()

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif 400 <= status < 500:
                errors.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, watched)
        if 400 <= status < 500:
            REJECTED.labels(reason=reason(status, bytes(errors))).inc()

    async def refuse(self, send: Send, status: int, why: str, message: str) -> None:
        REJECTED.labels(reason=why).inc()
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ClientMistakes(logging.Filter):
    """BentoML logs each refused request as an ERROR with a traceback that quotes the input. A
    client's mistake is not the server's error: one line, without the values, is enough (the
    model_rejected_requests_total metric counts them by reason)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            shown = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in error.errors()[:3]
            )
        elif isinstance(error, BentoMLException) and error.error_code < 500:
            shown = type(error).__name__
        else:
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "refused %s: %s", (path, shown)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return True


def reason(status: int, body: bytes) -> str:
    """The first validation error's type (missing, extra_forbidden, ...), or the status."""
    try:
        return str(json.loads(body)["detail"][0]["type"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"http_{status}"


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
