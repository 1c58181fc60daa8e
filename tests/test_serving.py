"""Serving tier (slow): the baked project's Bento, served for real, answers and holds its SLO."""

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ENV, free_port, post, run

pytestmark = pytest.mark.slow


def start(cmd: list[str], cwd: Path, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on a free port (put in place of {port} in cmd) and wait for /readyz."""
    port = str(free_port())
    with log.open("wb") as out:
        server = subprocess.Popen(
            [part.format(port=port) for part in cmd],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**ENV, **env},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                pytest.fail(f"{' '.join(cmd)} did not serve:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)


def stop(server: subprocess.Popen[bytes]) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def bento(project: Path) -> Path:
    run(["make", "train"], project)
    run(["make", "bento"], project)
    return project


@pytest.fixture(scope="module")
def served(bento: Path) -> Iterator[str]:
    """`make serve`, as a developer runs it: from a shell whose BENTOML_HOME is another store."""
    server, url = start(
        ["make", "serve", "PORT={port}"],
        bento,
        bento / "build/serve.log",
        BENTOML_HOME=str(bento / "build/another-store"),
    )
    try:
        yield url
    finally:
        stop(server)


def test_bento_is_a_complete_image_context(bento: Path) -> None:
    context = bento / "build/bento"
    assert (context / "env/docker/Dockerfile").is_file()
    assert list((context / "models").glob("*/*/model.onnx"))
    assert "BENTO_USER_UID=1034" in (context / "env/docker/Dockerfile").read_text()
    requirements = (context / "env/python/requirements.txt").read_text()
    assert "onnxruntime==" in requirements
    assert "mlflow" not in requirements
    assert "dvc" not in requirements


def test_the_bento_ships_the_shared_modules_and_serving_alone(bento: Path) -> None:
    package = next(path.name for path in (bento / "src").iterdir())
    src = bento / "src" / package
    wanted = sorted(
        path.relative_to(src).as_posix()
        for path in src.rglob("*.py")
        if path.parent in (src, src / "serving")
    )
    shipped = {
        path.as_posix().split(f"/{package}/", 1)[1]: path
        for path in (bento / "build/bento/src").rglob("*.py")
    }
    assert sorted(shipped) == wanted
    assert "serving/service.py" in shipped
    # The service imports from the Bento's files alone: its copy of the package comes first, and
    # has no pipeline or ops to fall back on.
    folder = shipped["__init__.py"].parent.parent
    code = (
        f"import importlib.util, sys; sys.path.insert(0, {str(folder)!r}); "
        f"import {package}.serving.service as service; print(service.__file__); "
        f"print(importlib.util.find_spec('{package}.pipeline'), "
        f"importlib.util.find_spec('{package}.ops'))"
    )
    store = {"BENTOML_HOME": str(bento / "build/bentoml")}  # where make bento put the model
    result = run([str(bento / ".venv/bin/python"), "-c", code], bento, env=store)
    assert result.stdout.splitlines() == [str(shipped["serving/service.py"]), "None None"]


def test_the_readme_curl_gets_a_prediction(bento: Path, served: str) -> None:
    readme = (bento / "README.md").read_text()
    assert "-d @build/example.json" in readme
    status, answer = post(served, (bento / "build/example.json").read_bytes())
    assert status == 200
    assert answer["predictions"][0]["label"] in {"benign", "malignant"}  # type: ignore[index]


def test_make_serve_serves_this_checkouts_model(bento: Path, served: str) -> None:
    """make bento and make serve keep to the checkout's own store, whatever the shell says: two
    checkouts of one project never serve each other's model."""
    package = next(path.name for path in (bento / "src").iterdir())
    assert list((bento / "build/bentoml/models" / package).iterdir())
    assert not (bento / "build/another-store/models").exists()
    _, answer = post(served, (bento / "build/example.json").read_bytes())
    model = hashlib.md5((bento / "models/model.joblib").read_bytes()).hexdigest()
    assert answer["model_version"] == model[:12]


def test_a_bad_request_is_a_400_naming_the_field(bento: Path, served: str) -> None:
    example = json.loads((bento / "build/example.json").read_text())
    example["records"][0]["mean_radius"] = "large"
    status, answer = post(served, json.dumps(example).encode())
    assert status == 400
    assert "mean_radius" in json.dumps(answer)


def test_loadtest_holds_the_slo(bento: Path, served: str) -> None:
    result = run(["make", "loadtest", f"URL={served}", "USERS=4", "DURATION=5"], bento)
    assert "error_rate 0" in result.stdout


def test_the_image_context_serves_alone(bento: Path, tmp_path: Path) -> None:
    """What the container runs: the exported Bento, with nothing in BentoML's home."""
    bentoml = str(bento / ".venv/bin/bentoml")
    server, url = start(
        [bentoml, "serve", ".", "--host", "127.0.0.1", "--port", "{port}"],
        bento / "build/bento",
        tmp_path / "serve.log",
        BENTOML_HOME=str(tmp_path / "home"),
    )
    try:
        status, _ = post(url, (bento / "build/example.json").read_bytes())
    finally:
        stop(server)
    assert status == 200


def test_batch_predictions(bento: Path) -> None:
    run(["make", "predict", "INPUT=data/split/test.parquet", "OUTPUT=build/predictions.csv"], bento)
    lines = (bento / "build/predictions.csv").read_text().splitlines()
    assert lines[0].startswith("mean_radius,")
    assert lines[0].endswith(",diagnosis,prediction,probability_benign,probability_malignant")
    out = "OUTPUT=build/others.csv"
    run(["make", "predict", "INPUT=data/split/test.parquet", out, "KEEP=others"], bento)
    # The label, the one input column the model does not read, beside the predictions.
    others = (bento / "build/others.csv").read_text().splitlines()
    assert others[0] == "diagnosis,prediction,probability_benign,probability_malignant"
    assert [line.split(",")[-3:] for line in others] == [line.split(",")[-3:] for line in lines]
    assert len(lines) == 115
