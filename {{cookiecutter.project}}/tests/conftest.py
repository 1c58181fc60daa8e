"""Shared test data: the example table and two tables of other shapes, plus params for each."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from tumor_classifier import params
from tumor_classifier.data import feature_columns, task_of
from tumor_classifier.params import DataParams, Params, SliceParams
from tumor_classifier.pipeline import (
    export,
    reference,
    split,
    train,
    validate,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_params() -> Params:
    return params.load(ROOT / "params.yaml")


def fast(p: Params, data: DataParams, slice_: SliceParams) -> Params:
    """Params for another table: its data and slice, a small search, everything else as shipped."""
    search = p.train.search.model_copy(update={"cv_folds": 3})
    train = p.train.model_copy(update={"search": search})
    evaluate = p.evaluate.model_copy(update={"permutation_repeats": 2, "slice": slice_})
    return p.model_copy(update={"data": data, "train": train, "evaluate": evaluate})


@pytest.fixture(scope="session")
def cancer() -> pd.DataFrame:
    """The example data, as data/raw.csv holds it."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    return frame


def customers_table() -> pd.DataFrame:
    """Binary target, categorical columns, missing values and an identifier column."""
    rng = np.random.default_rng(7)
    n = 600
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    tenure = rng.gamma(2.0, 12.0, n)
    spend = rng.normal(50, 15, n) + (plan == "pro") * 30
    logit = -1.0 + 1.8 * (plan == "basic") - 0.05 * tenure + 0.02 * (spend - 50)
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "plan": plan,
            "region": region,
            "tenure": tenure,
            "spend": spend,
            "churned": churned,
        }
    )
    frame.loc[rng.random(n) < 0.08, "tenure"] = np.nan
    frame.loc[rng.random(n) < 0.05, "region"] = np.nan
    return frame


def wine_table() -> pd.DataFrame:
    """Three classes, numeric features of very different scales."""
    frame = load_wine(as_frame=True).frame
    frame["cultivar"] = frame.pop("target").map({0: "a", 1: "b", 2: "c"})
    return frame


def diabetes_table() -> pd.DataFrame:
    """A regression: a numeric target of 214 distinct values, ten numeric features."""
    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"})


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    return diabetes_table()


@pytest.fixture(scope="session")
def diabetes_params(project_params: Params) -> Params:
    return fast(project_params, DataParams(target="progression"), SliceParams(column="bmi", bins=3))


@pytest.fixture(scope="session")
def customers() -> pd.DataFrame:
    return customers_table()


@pytest.fixture(scope="session")
def wine() -> pd.DataFrame:
    return wine_table()


@pytest.fixture(scope="session")
def customers_params(project_params: Params) -> Params:
    data = DataParams(
        target="churned", categorical=["plan", "region"], drop=["customer_id"], positive_class="yes"
    )
    return fast(project_params, data, SliceParams(column="plan", bins=1))


@pytest.fixture(scope="session")
def wine_params(project_params: Params) -> Params:
    return fast(
        project_params, DataParams(target="cultivar"), SliceParams(column="alcohol", bins=2)
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, as a stage's main() runs in, with params written on demand."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files `make manifests` reads, free to change."""
    for folder in ("deploy", "argocd"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def write_params(folder: Path, p: Params) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(p.model_dump(by_alias=True)))


# Test servers listen below the kernel's ephemeral ports (from 32768 on Linux, 49152 on macOS): a
# port that bind(0) handed out and released can be handed out again at once, as it is to the
# ZeroMQ endpoints of BentoML's process manager while a service starts (the probe then reads
# their greeting).
PORTS = range(20000, 32000)


def free_port() -> int:
    """A port nobody listens on, outside the range the kernel hands out to others."""
    for port in random.sample(PORTS, 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {PORTS.start} to {PORTS.stop}")


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Poll url until it answers 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)


@dataclass(frozen=True)
class Served:
    url: str
    folder: Path  # the model, its ONNX export, schema and params the service was built from
    test: pd.DataFrame  # rows the model did not train on


@dataclass(frozen=True)
class Stored:
    folder: Path  # the model, its ONNX export, schema and params, and BENTOML_HOME holding them
    test: pd.DataFrame  # rows the model did not train on

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that loads the model from BentoML's store."""
        home = str(self.folder / "bentoml")
        return {**os.environ, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "true"}


def build(table: pd.DataFrame, p: Params, folder: Path) -> pd.DataFrame:
    """Train a model of the table into folder, with all that `make bento` stores (schema, ONNX
    export, reference statistics) and the params; return the rows it did not train on."""
    write_params(folder, p)
    schema = validate.infer(table, p.data, p.validate_.range_margin)
    (folder / "schema.yaml").write_text(str(schema.to_yaml()))
    task = task_of(table[p.data.target], p.data)
    train_rows, test_rows = split.split(table, p.data.target, p.split, task)
    fitted = train.fit(train_rows, p.data, p.train)
    joblib.dump(fitted.model, folder / "model.joblib")
    onnx, _ = export.export(fitted.model, test_rows, p.data, p.export)
    assert onnx is not None
    (folder / "onnx").mkdir()
    (folder / "onnx/model.onnx").write_bytes(onnx)
    rows = reference.sample(train_rows, fitted.model, p.data, p.reference, p.train.seed)
    numeric, _ = feature_columns(list(table.columns), p.data)
    stats = reference.statistics(rows, numeric, p.reference)
    (folder / "stats.json").write_text(json.dumps(stats))
    return test_rows


def store(table: pd.DataFrame, p: Params, folder: Path) -> Stored:
    """A model of the table built into folder and put in a BentoML store of its own there, as
    `make bento` puts it in the project's."""
    stored = Stored(folder, build(table, p, folder))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.ops.bento",
            *["model.joblib", "onnx", "schema.yaml", "stats.json"],
        ],
        cwd=folder,
        env=stored.env,
        check=True,
        capture_output=True,
    )
    return stored


@contextmanager
def serve(stored: Stored) -> Iterator[str]:
    """A real `bentoml serve` on 127.0.0.1 of a stored model; its output goes to serve.log beside
    the model."""
    port = free_port()
    log = stored.folder / "serve.log"
    service = "tumor_classifier.serving.service:Classifier"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                service,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=stored.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/readyz", server, log, 90)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def serving(p: Params, out_of_range: str) -> Params:
    """Params with this range policy, and 1 s for a client to send a request (quick slow-client
    tests)."""
    serve_ = p.serve.model_copy(update={"read_timeout": 1.0, "out_of_range": out_of_range})
    return p.model_copy(update={"serve": serve_})


@pytest.fixture(scope="session")
def stored(
    customers: pd.DataFrame, customers_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Stored:
    """A customers model (categories, nulls and an identifier column) in BentoML's store, with the
    shipped range policy: numbers outside their range refused."""
    return store(customers, serving(customers_params, "refuse"), tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def served(stored: Stored) -> Iterator[Served]:
    """The service as shipped, serving the stored customers model."""
    with serve(stored) as url:
        yield Served(url, stored.folder, stored.test)


@pytest.fixture(scope="session")
def flagged(
    wine: pd.DataFrame, wine_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Stored:
    """A wine model in BentoML's store with serve.out_of_range: flag. Thirteen numbers: near the
    float32 limit they overflow inside ONNX Runtime into NaN probabilities."""
    return store(wine, serving(wine_params, "flag"), tmp_path_factory.mktemp("flagging"))


@pytest.fixture(scope="session")
def flagging(flagged: Stored) -> Iterator[Served]:
    """The flagged wine model, served."""
    with serve(flagged) as url:
        yield Served(url, flagged.folder, flagged.test)


@pytest.fixture(scope="session")
def regressor(
    diabetes: pd.DataFrame, diabetes_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Stored:
    """A diabetes regressor in BentoML's store, with the shipped range policy."""
    return store(diabetes, serving(diabetes_params, "refuse"), tmp_path_factory.mktemp("regr"))


@pytest.fixture(scope="session")
def regressing(regressor: Stored) -> Iterator[Served]:
    """The diabetes regressor served as shipped: its answer is a number per record."""
    with serve(regressor) as url:
        yield Served(url, regressor.folder, regressor.test)
