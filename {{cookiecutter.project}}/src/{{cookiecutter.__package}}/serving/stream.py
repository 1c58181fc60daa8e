"""`make stream`: predictions for a Redis stream of records, by the service's model and contract.

Each prediction is the service's answer for one record: the class and every class's probability
from a classifier, the predicted number from a regression; and, as the service answers, the features
outside their training range (serve.out_of_range: flag; with refuse such a record is a dead letter).

Each input entry holds one record as JSON in its `record` field. A consumer group shares the
entries among replicas; the predictions (and the refused records, with their reason) are written
and the entries acknowledged in one transaction, so a consumer killed at any point loses nothing
and writes nothing twice. Entries a dead consumer read but never acknowledged are claimed by a
live one once idle for `--claim-idle-ms`. A record the model fails on stays unacknowledged, to be
claimed and tried again, until its delivery count reaches serve.stream_max_deliveries in
params.yaml: then it joins the dead letters, with the error.
"""

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis as sync_redis
import redis.asyncio as redis
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .. import NAME, cli, contract
from . import bundle
from .monitor import OnlineDrift

# Outcomes: predicted; rejected by the contract or the model (dead letter); retried (the model
# failed, the entry stays pending); failed (the model failed on its last delivery: dead letter).
RECORDS = Counter("stream_records", "Stream entries handled, by outcome", ["outcome"])
LAG = Gauge("stream_lag", "Entries of the input stream not yet delivered to the consumer group")
PENDING = Gauge("stream_pending", "Entries delivered to the consumer group but not acknowledged")
# The service's names: its queries read the stream's pods too, under job <project>-stream.
PREDICTIONS = Counter("model_predictions", "Predictions served, by class", ["class"])
DRIFT = Gauge(
    "model_feature_drift",
    "Population stability index of each feature over recent records",
    ["feature"],
)
PREDICTION_DRIFT = Gauge(
    "model_prediction_drift",
    "Population stability index of the predicted classes over recent records",
)
OUT_OF_RANGE = Counter(
    "model_out_of_range_values",
    "Numbers answered outside their training range, by feature (out_of_range: flag)",
    ["feature"],
)
INFO = Gauge("model_info", "The model being served (value 1)", ["model_version", "backend"])

Entry = tuple[str, dict[str, str]]


class Refused(ValueError):
    """A record the contract or the model refuses: a dead letter at once, as the service's 400."""


# redis-py's types cover bytes and every reply protocol; with decode_responses it returns str.
Fields = dict[Any, Any]


@dataclass(frozen=True)
class Streams:
    input: str
    output: str
    dead_letter: str
    group: str


class Model:
    """What the service loads, applied to stream entries."""

    def __init__(self, stored: bundle.Bundle, registry: CollectorRegistry | None = None) -> None:
        """registry: where a regression's value histogram is exported (the process's, in main)."""
        self.features = stored.features
        accept_unseen = stored.settings["accept_unseen_categories"]
        refuse = stored.settings["out_of_range"] == "refuse"  # as the service does
        self.record = contract.record_model(self.features, accept_unseen, refuse)
        # Under flag, each answer names its features outside their range (none under refuse).
        self.ranges = None if refuse else contract.Ranges(self.features)
        self.predictor = stored.predictor
        self.version = stored.version
        stats = json.loads((stored.folder / "reference.json").read_text())
        self.drift = OnlineDrift(self.features, stats, stored.settings["window"])
        self.values: Histogram | None = None
        if self.predictor.regression:
            # The service's series of a regression's answers, in buckets at the training deciles.
            edges = stats["prediction"]["edges"]
            documentation = "A regression's predicted value"
            self.values = Histogram(
                "model_prediction_value", documentation, buckets=edges, registry=registry
            )

    def parse(self, fields: dict[str, str]) -> BaseModel:
        """The entry's record, or Refused with one line that says what is wrong with it."""
        if "record" not in fields:
            raise Refused(f"no `record` field (fields: {', '.join(sorted(fields)) or 'none'})")
        try:
            return self.record.model_validate_json(fields["record"])
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
            raise Refused(f"{where}: {first['msg']}{more}") from None

    def predict(self, records: list[BaseModel]) -> list[Fields]:
        """One output entry per record: the class, every class's probability (a regression: the
        predicted number), the features outside their range as a JSON list, the model version."""
        columns = {f.name: [getattr(r, f.name) for r in records] for f in self.features}
        if self.values is None:
            answers = self.classify(columns)
        else:
            answers = self.estimate(columns, self.values)
        for answer, outside in zip(answers, self.flag(columns, len(records)), strict=True):
            answer["out_of_range"] = json.dumps(outside)
        return answers

    def flag(self, columns: dict[str, list[Any]], rows: int) -> list[list[str]]:
        """Each record's features outside their range, counted by feature, as the service does."""
        if self.ranges is None:
            return [[]] * rows
        outside = self.ranges.outside(columns, rows)
        for name, n in zip(self.ranges.names, np.count_nonzero(outside, axis=0), strict=True):
            if n:
                OUT_OF_RANGE.labels(feature=name).inc(int(n))
        return self.ranges.flagged(outside)

    def classify(self, columns: dict[str, list[Any]]) -> list[Fields]:
        """A classifier's output entries: the class, every class's probability, the version."""
        proba = self.predictor.proba(columns)
        if not np.isfinite(proba).all():  # the service refuses these records too
            raise Refused("the model gives no finite probability for this record")
        labels = self.predictor.labels(proba)
        self.drift.observe(columns, labels)
        classes = self.predictor.classes
        for label in labels:
            PREDICTIONS.labels(**{"class": label}).inc()
        return [
            {
                "prediction": label,
                "probabilities": json.dumps(dict(zip(classes, row, strict=True))),
                "model_version": self.version,
            }
            for label, row in zip(labels, proba.tolist(), strict=True)
        ]

    def estimate(self, columns: dict[str, list[Any]], histogram: Histogram) -> list[Fields]:
        """A regression's output entries: the number (as JSON, like the service), the version."""
        values = self.predictor.values(columns)
        if not np.isfinite(values).all():  # the service refuses these records too
            raise Refused("the model gives no finite prediction for this record")
        numbers = values.tolist()
        self.drift.observe(columns, numbers)
        for value in numbers:
            histogram.observe(value)
        return [{"prediction": json.dumps(v), "model_version": self.version} for v in numbers]

    def update_gauges(self) -> None:
        indices = self.drift.indices()
        if not math.isnan(indices["prediction"]):  # the window holds enough records
            for f in self.features:
                DRIFT.labels(feature=f.name).set(indices[f.name])
            PREDICTION_DRIFT.set(indices["prediction"])


async def handle(
    client: redis.Redis,
    model: Model,
    streams: Streams,
    entries: list[Entry],
    deliveries: dict[str, int],
    max_deliveries: int,
) -> None:
    """Write a prediction or a dead letter for each entry and acknowledge it, atomically; leave
    pending the entries the model failed on, until their last delivery."""
    good: list[tuple[str, BaseModel]] = []
    dead: list[Fields] = []
    for entry_id, fields in entries:
        try:
            good.append((entry_id, model.parse(fields)))
        except Refused as error:
            dead.append({"id": entry_id, "record": fields.get("record", ""), "reason": str(error)})
    outputs, refused, failed = predictions(model, good)
    record = {entry_id: fields.get("record", "") for entry_id, fields in entries}
    dead += [{"id": i, "record": record[i], "reason": reason} for i, reason in refused.items()]
    rejected = len(dead)
    retried = {i for i in failed if deliveries.get(i, 1) < max_deliveries}
    for entry_id, problem in failed.items():
        delivery = deliveries.get(entry_id, 1)
        if entry_id in retried:
            print(f"stream: {entry_id}: {problem} (delivery {delivery} of {max_deliveries})",
                  file=sys.stderr)  # fmt: skip
        else:
            reason = f"no prediction in {delivery} deliveries: {problem}"
            dead.append({"id": entry_id, "record": record[entry_id], "reason": reason})
    async with client.pipeline(transaction=True) as pipe:
        for entry_id, output in outputs:
            pipe.xadd(streams.output, {"id": entry_id, **output})
        for letter in dead:
            pipe.xadd(streams.dead_letter, letter)
        done = [entry_id for entry_id, _ in entries if entry_id not in retried]
        if done:
            pipe.xack(streams.input, streams.group, *done)
        await pipe.execute()
    RECORDS.labels(outcome="predicted").inc(len(outputs))
    RECORDS.labels(outcome="rejected").inc(rejected)
    RECORDS.labels(outcome="retried").inc(len(retried))
    RECORDS.labels(outcome="failed").inc(len(dead) - rejected)


def predictions(
    model: Model, good: list[tuple[str, BaseModel]]
) -> tuple[list[tuple[str, Fields]], dict[str, str], dict[str, str]]:
    """The outputs, the records the model refuses and those it fails on, each with its error."""
    if not good:
        return [], {}, {}
    try:
        outputs = model.predict([record for _, record in good])
        return list(zip([entry_id for entry_id, _ in good], outputs, strict=True)), {}, {}
    except Exception:  # one record fails its batch: the others are still answered, one by one
        pass
    answered: list[tuple[str, Fields]] = []
    refused: dict[str, str] = {}
    failed: dict[str, str] = {}
    for entry_id, record in good:
        try:
            answered.append((entry_id, model.predict([record])[0]))
        except Refused as error:
            refused[entry_id] = str(error)
        except Exception as error:  # whatever it is, its dead letter says it in one line
            failed[entry_id] = " ".join(f"{type(error).__name__}: {error}".split())
    return answered, refused, failed


async def delivered(client: redis.Redis, streams: Streams, entries: list[Entry]) -> dict[str, int]:
    """How many times each entry has been delivered, this delivery included (claims count)."""
    async with client.pipeline(transaction=False) as pipe:
        for entry_id, _ in entries:
            pipe.xpending_range(streams.input, streams.group, entry_id, entry_id, 1)
        found: list[Any] = await pipe.execute()
    return {p["message_id"]: p["times_delivered"] for pending in found for p in pending}


async def measure(client: redis.Redis, streams: Streams) -> None:
    for group in await client.xinfo_groups(streams.input):
        if group["name"] == streams.group:
            LAG.set(group.get("lag") or 0)
            PENDING.set(group["pending"])


async def consume(
    client: redis.Redis,
    model: Model,
    streams: Streams,
    consumer: str,
    stop: asyncio.Event,
    batch: int = 100,
    claim_idle_ms: int = 30_000,
    max_deliveries: int = 3,
) -> None:
    """Handle entries until stop is set; the batch in hand is finished first."""
    try:
        await client.xgroup_create(streams.input, streams.group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):  # the group exists: another replica made it
            raise
    print(f"stream: {consumer} consumes {streams.input} in group {streams.group}", flush=True)
    next_claim = 0.0
    while not stop.is_set():
        entries: list[Entry] = []
        deliveries: dict[str, int] = {}  # a new entry's is 1
        if time.monotonic() >= next_claim:
            claimed: Any = await client.xautoclaim(
                streams.input, streams.group, consumer, claim_idle_ms, "0-0", count=batch
            )
            entries = claimed[1]
            deliveries = await delivered(client, streams, entries) if entries else {}
            next_claim = time.monotonic() + claim_idle_ms / 2000
        if not entries:
            read: Any = await client.xreadgroup(
                streams.group, consumer, {streams.input: ">"}, count=batch, block=1000
            )
            entries = read[0][1] if read else []
        if entries:
            await handle(client, model, streams, entries, deliveries, max_deliveries)
            model.update_gauges()
        await measure(client, streams)


async def run(url: str, model: Model, streams: Streams, consumer: str, **options: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        await consume(client, model, streams, consumer, stop, **options)
    finally:
        await client.aclose()
    print(f"stream: {consumer} stopped", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="stream", description=__doc__)
    env = os.environ.get
    parser.add_argument("--url", default=env("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--input", default=env("STREAM_INPUT", "records"))
    parser.add_argument("--output", default=env("STREAM_OUTPUT", "predictions"))
    parser.add_argument("--dead-letter", default=env("STREAM_DEAD_LETTER", "records-dead"))
    parser.add_argument("--group", default=env("STREAM_GROUP", NAME))
    # A pod's name: unique among the replicas, as a consumer of a group must be.
    parser.add_argument("--consumer", default=env("STREAM_CONSUMER", socket.gethostname()))
    parser.add_argument("--batch", type=int, default=100, help="entries read at once")
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument(
        "--max-deliveries", type=int, help="default: serve.stream_max_deliveries of the model"
    )
    parser.add_argument("--metrics-port", type=int, default=int(env("METRICS_PORT", "9100")))
    args = parser.parse_args(argv)
    # Before the model loads: a wrong URL is reported in a second, not after the imports.
    try:
        sync_redis.Redis.from_url(args.url).ping()
    except (RedisConnectionError, OSError) as error:
        raise cli.UserError(
            f"cannot reach the broker at {args.url} ({error}): start it or set REDIS_URL"
        ) from None
    stored = bundle.load()
    model = Model(stored, REGISTRY)
    INFO.labels(model_version=model.version, backend=model.predictor.backend).set(1)
    start_http_server(args.metrics_port)
    streams = Streams(args.input, args.output, args.dead_letter, args.group)
    options = {
        "batch": args.batch,
        "claim_idle_ms": args.claim_idle_ms,
        "max_deliveries": args.max_deliveries or stored.settings["stream_max_deliveries"],
    }
    asyncio.run(run(args.url, model, streams, args.consumer, **options))


if __name__ == "__main__":
    cli.run(main)
