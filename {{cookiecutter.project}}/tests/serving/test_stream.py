"""The stream consumer against a real redis-server: a crash mid-stream loses and repeats nothing;
a regression streams the service's number for each record; under flag, a record outside its range
is answered with its features named, as the service answers it."""

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import prometheus_client
import pytest
import redis
import redis.asyncio

from tumor_classifier import contract
from tumor_classifier.params import load
from tumor_classifier.serving import bundle, stream
from tumor_classifier.serving.predict import Columns, Predictor

from conftest import ROOT, Stored, free_port

GOOD = 1500
# Records that break the contract, each with the words its dead letter's reason must hold.
BAD = [
    ('{"plan": "basic"}', "Field required"),
    ("not json", "Invalid JSON"),
    (None, "no `record` field"),
    ("wrong-type", "tenure"),
    ("unseen", "plan"),
    ("extra", "Extra inputs are not permitted"),
    ("far", "tenure"),  # outside its training range: refused, as the service does
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own on 127.0.0.1, without persistence, stopped afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (Debian/Ubuntu: apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def bad_fields(kind: str | None, row: dict[str, object]) -> dict[str, str]:
    if kind is None:
        return {"data": json.dumps(row)}
    changed = {
        "wrong-type": {**row, "tenure": "ten"},
        "unseen": {**row, "plan": "platinum"},
        "extra": {**row, "coupon": "x"},
        "far": {**row, "tenure": 1e9},
    }
    return {"record": json.dumps(changed[kind]) if kind in changed else kind}


def command(url: str, metrics: int, *options: str) -> list[str]:
    """`make stream`'s command against the broker at url, its metrics on that port."""
    module = "tumor_classifier.serving.stream"
    return [sys.executable, "-m", module, "--url", url, "--metrics-port", str(metrics), *options]


def start(
    stored: Stored, url: str, consumer: str, metrics: int, log: Path, *options: str
) -> subprocess.Popen:
    quick = ["--consumer", consumer, "--batch", "20", "--claim-idle-ms", "500", *options]
    with log.open("wb") as out:
        return subprocess.Popen(
            command(url, metrics, *quick),
            cwd=ROOT,
            env=stored.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: object, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the consumer did not get there:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


def metric(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))


def test_a_crash_mid_stream_loses_nothing_and_predicts_each_record_once(
    stored: Stored, broker: str, tmp_path: Path
) -> None:
    client: Any = redis.Redis.from_url(broker, decode_responses=True)  # typed for bytes and str
    p = load(stored.folder / "params.yaml")
    features = contract.from_schema((stored.folder / "schema.yaml").read_text(), p.data)
    rows = stored.test[[f.name for f in features]]
    rows = pd.concat([rows] * (GOOD // len(rows) + 1)).head(GOOD)
    records = [json.loads(r) for r in rows.to_json(orient="records", lines=True).splitlines()]
    good: dict[str, dict[str, object]] = {}
    bad: dict[str, str] = {}
    for i, record in enumerate(records):
        good[client.xadd("records", {"record": json.dumps(record)})] = record
        if i % 100 == 0:
            kind, words = BAD[(i // 100) % len(BAD)]
            bad[client.xadd("records", bad_fields(kind, record))] = words

    handled = lambda: client.xlen("predictions") + client.xlen("records-dead")  # noqa: E731
    first_log = tmp_path / "first.log"
    first = start(stored, broker, "stream-a", free_port(), first_log)
    wait_for(lambda: handled() > 0, first, first_log, 60)
    first.kill()  # SIGKILL: no chance to finish its batch
    first.wait()
    assert 0 < handled() < len(good) + len(bad), "the crash did not come mid-stream"
    dead_before = client.xlen("records-dead")

    # Another pod takes over, including what the dead one read but never acknowledged.
    log, metrics = tmp_path / "second.log", free_port()
    second = start(stored, broker, "stream-b", metrics, log)
    wait_for(lambda: handled() >= len(good) + len(bad), second, log, 120)
    wait_for(lambda: metric(metrics, "stream_lag ") == 0, second, log, 10)
    assert metric(metrics, 'stream_records_total{outcome="rejected"}') == len(bad) - dead_before
    assert metric(metrics, "model_feature_drift{") != 0
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert "stream-b stopped" in log.read_text()

    predictions = client.xrange("predictions")
    assert sorted(p["id"] for _, p in predictions) == sorted(good)  # each once, none lost
    assert client.xpending("records", "tumor_classifier")["pending"] == 0
    letters = {fields["id"]: fields["reason"] for _, fields in client.xrange("records-dead")}
    assert letters.keys() == bad.keys()
    for entry_id, reason in letters.items():
        assert bad[entry_id] in reason
        assert "\n" not in reason

    # The same predictor as the service and `make predict`, on the same records.
    predictor = Predictor(
        features, stored.folder / "model.joblib", stored.folder / "onnx/model.onnx"
    )
    ordered = [good[p["id"]] for _, p in predictions]
    proba = predictor.proba({f.name: [r[f.name] for r in ordered] for f in features})
    assert [p["prediction"] for _, p in predictions] == predictor.labels(proba)
    streamed = [json.loads(p["probabilities"])["yes"] for _, p in predictions]
    np.testing.assert_allclose(streamed, proba[:, predictor.classes.index("yes")], atol=1e-6)


def test_an_unreachable_broker_is_one_line(stored: Stored, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        command(url, free_port()),
        cwd=ROOT,
        env=stored.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"stream: cannot reach the broker at {url}")
    assert result.stderr.count("\n") == 1


# A record inside the contract that the test's model fails on (a tenure no other record has).
POISON = 12.3456789


class Flaky(Predictor):
    """The stored model's predictor, raising on the poison record its first `failures` times."""

    def __init__(self, stored: bundle.Bundle, failures: int) -> None:
        folder = stored.folder
        super().__init__(stored.features, folder / "model.joblib", folder / "model.onnx")
        self.failures = failures

    def proba(self, columns: Columns) -> np.ndarray:
        if POISON in columns["tenure"] and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the model's native code failed\non this record")
        return super().proba(columns)


def stored_bundle(stored: Stored) -> bundle.Bundle:
    """The model as `make bento` wrote it into the stored model's BentoML store."""
    (latest,) = (stored.folder / "bentoml/models").glob("*/latest")
    return bundle.load(latest.parent / latest.read_text().strip())


def poisoned(stored: Stored, failures: int) -> stream.Model:
    """The stream's model of the stored bundle, predicting flakily."""
    model_bundle = stored_bundle(stored)
    model = stream.Model(model_bundle)
    model.predictor = Flaky(model_bundle, failures)
    return model


async def consume_all(url: str, model: stream.Model, name: str, records: int) -> dict[str, Any]:
    """Send the test records and the poison one, consume them until each is answered or dead."""
    client: Any = redis.asyncio.Redis.from_url(url, decode_responses=True)
    streams = stream.Streams(f"{name}-in", f"{name}-out", f"{name}-dead", "g")
    row = {"plan": "basic", "region": "north", "tenure": 20.0, "spend": 50.0}
    ids = [await client.xadd(streams.input, {"record": json.dumps(row)}) for _ in range(records)]
    poison = await client.xadd(streams.input, {"record": json.dumps({**row, "tenure": POISON})})
    ids += [await client.xadd(streams.input, {"record": json.dumps(row)}) for _ in range(records)]
    stop = asyncio.Event()
    options = {"batch": 20, "claim_idle_ms": 100, "max_deliveries": 3}
    task = asyncio.create_task(stream.consume(client, model, streams, "c", stop, **options))
    deadline = time.monotonic() + 60
    while await client.xlen(streams.output) + await client.xlen(streams.dead_letter) <= 2 * records:
        assert not task.done()
        assert time.monotonic() < deadline, "the poison record is still pending"
        await asyncio.sleep(0.05)
    stop.set()
    await task
    found = {
        "predicted": [f["id"] for _, f in await client.xrange(streams.output)],
        "dead": {f["id"]: f["reason"] for _, f in await client.xrange(streams.dead_letter)},
        "pending": (await client.xpending(streams.input, streams.group))["pending"],
        "ids": ids,
        "poison": poison,
    }
    await client.aclose()
    return found


def outcomes() -> dict[str, float]:
    """This process's stream_records_total, by outcome."""
    sample = prometheus_client.REGISTRY.get_sample_value
    return {
        outcome: sample("stream_records_total", {"outcome": outcome}) or 0.0
        for outcome in ("predicted", "retried", "failed")
    }


def test_a_record_the_model_keeps_failing_on_is_a_dead_letter_after_its_last_delivery(
    stored: Stored, broker: str
) -> None:
    before = outcomes()
    found = asyncio.run(consume_all(broker, poisoned(stored, failures=10**6), "poison", 30))
    assert sorted(found["predicted"]) == sorted(found["ids"])  # its batch is answered without it
    assert found["dead"] == {
        found["poison"]: "no prediction in 3 deliveries: "
        "RuntimeError: the model's native code failed on this record"
    }
    assert found["pending"] == 0  # nothing is claimed forever
    after = outcomes()
    assert {k: after[k] - before[k] for k in after} == {"predicted": 60, "retried": 2, "failed": 1}


def test_a_record_the_model_failed_on_once_is_predicted_on_its_next_delivery(
    stored: Stored, broker: str
) -> None:
    found = asyncio.run(consume_all(broker, poisoned(stored, failures=1), "transient", 30))
    assert sorted(found["predicted"]) == sorted([*found["ids"], found["poison"]])
    assert found["dead"] == {}
    assert found["pending"] == 0


def test_a_regression_streams_the_services_number_for_each_record(
    regressor: Stored, broker: str, tmp_path: Path
) -> None:
    client: Any = redis.Redis.from_url(broker, decode_responses=True)
    model_bundle = stored_bundle(regressor)
    features, predictor = model_bundle.features, model_bundle.predictor
    rows = regressor.test[[f.name for f in features]]
    records = [json.loads(r) for r in rows.to_json(orient="records", lines=True).splitlines()]
    assert len(records) >= model_bundle.settings["window"] // 10  # enough to move the gauges
    good: dict[str, dict[str, object]] = {}
    bad: dict[str, str] = {}
    for i, record in enumerate(records):
        good[client.xadd("regression", {"record": json.dumps(record)})] = record
        if i == 10:  # a record without its bmi, and one far outside the training range
            missing = json.dumps({k: v for k, v in record.items() if k != "bmi"})
            bad[client.xadd("regression", {"record": missing})] = "bmi: Field required"
        if i == 20:
            far = json.dumps({**record, "age": 1e9})
            bad[client.xadd("regression", {"record": far})] = "age"

    log, metrics = tmp_path / "stream.log", free_port()
    names = ["--input", "regression", "--output", "estimates", "--dead-letter", "regression-dead"]
    consumer = start(regressor, broker, "regressor", metrics, log, *names, "--group", "r")
    handled = lambda: client.xlen("estimates") + client.xlen("regression-dead")  # noqa: E731
    wait_for(lambda: handled() >= len(good) + len(bad), consumer, log, 120)
    wait_for(lambda: metric(metrics, "stream_lag ") == 0, consumer, log, 10)
    assert metric(metrics, "model_prediction_value_count ") == len(good)
    assert metric(metrics, "model_feature_drift{") != 0
    assert metric(metrics, "model_prediction_drift ") != 0  # the numbers' index, as the service's
    assert metric(metrics, 'stream_records_total{outcome="rejected"}') == len(bad)
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(timeout=30) == 0

    estimates = client.xrange("estimates")
    assert sorted(fields["id"] for _, fields in estimates) == sorted(good)
    # The service's answer of a regression, a number, beside the entry's id and the model version.
    answer = ("id", "model_version", "out_of_range", "prediction")
    assert {tuple(sorted(fields)) for _, fields in estimates} == {answer}
    assert {fields["model_version"] for _, fields in estimates} == {model_bundle.version}
    assert {fields["out_of_range"] for _, fields in estimates} == {"[]"}  # refused, not flagged
    streamed = [json.loads(fields["prediction"]) for _, fields in estimates]
    assert all(type(value) is float for value in streamed)
    ordered = [good[fields["id"]] for _, fields in estimates]
    expected = predictor.values({f.name: [r[f.name] for r in ordered] for f in features})
    np.testing.assert_allclose(streamed, expected, rtol=1e-6)
    letters = {fields["id"]: fields["reason"] for _, fields in client.xrange("regression-dead")}
    assert letters.keys() == bad.keys()
    for entry_id, reason in letters.items():
        assert reason.startswith(bad[entry_id])


def test_flag_streams_a_record_outside_its_range_naming_its_features(flagged: Stored) -> None:
    """Under serve.out_of_range: flag the stream answers as the service does: the record outside
    its range is predicted, its features named and counted; the one inside names none."""
    model_bundle = stored_bundle(flagged)
    model = stream.Model(model_bundle)
    features = {f.name: f for f in model_bundle.features}
    (record,) = json.loads(flagged.test.drop(columns="cultivar").head(1).to_json(orient="records"))
    far = {
        **record,
        "alcohol": features["alcohol"].bounds[1] + 5,
        "magnesium": features["magnesium"].bounds[0] - 1,
    }

    def counted() -> float:
        sample = prometheus_client.REGISTRY.get_sample_value
        return sample("model_out_of_range_values_total", {"feature": "alcohol"}) or 0.0

    before = counted()
    inside, outside = model.predict([model.parse({"record": json.dumps(r)}) for r in (record, far)])
    assert json.loads(inside["out_of_range"]) == []
    assert json.loads(outside["out_of_range"]) == ["alcohol", "magnesium"]
    assert outside["prediction"] in model_bundle.predictor.classes
    assert counted() == before + 1
    # The shipped policy refuses that record instead: a dead letter naming the feature.
    refusing = replace(model_bundle, settings={**model_bundle.settings, "out_of_range": "refuse"})
    with pytest.raises(stream.Refused, match="alcohol"):
        stream.Model(refusing).parse({"record": json.dumps(far)})
