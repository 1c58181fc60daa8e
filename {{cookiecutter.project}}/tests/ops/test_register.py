"""`make register`: lineage tags, one version per model file, aliases; SQLite and a real server."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import joblib
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tumor_classifier import tracking
from tumor_classifier.cli import UserError
from tumor_classifier.data import feature_columns, model_input
from tumor_classifier.ops import manifests, overlays, register
from tumor_classifier.params import Params
from tumor_classifier.pipeline import train

from conftest import free_port


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1, stopped after the module's tests."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"mlflow server did not start:\n{(folder / 'server.log').read_text()}"
                    )
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking store of each kind, with a model name of this test's own."""
    uri = (
        f"sqlite:///{tmp_path / 'mlflow.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("mlflow_server")
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    name = re.sub(r"\W", "_", request.node.name)
    monkeypatch.setattr(tracking, "NAME", name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return uri


@pytest.fixture(scope="module")
def small(
    cancer: pd.DataFrame, project_params: Params
) -> tuple[train.Fitted, Params, pd.DataFrame]:
    search = project_params.train.search.model_copy(update={"space": {"C": [1.0]}, "cv_folds": 2})
    p = project_params.model_copy(
        update={"train": project_params.train.model_copy(update={"search": search})}
    )
    numeric, categorical = feature_columns(list(cancer.columns), p.data)
    return train.fit(cancer, p.data, p.train), p, model_input(cancer, numeric, categorical)


@pytest.fixture
def pipeline_outputs(small: tuple[train.Fitted, Params, pd.DataFrame], workdir: Path) -> list[str]:
    """What the pipeline leaves for `make register`: the model, the data's .dvc file, metrics."""
    joblib.dump(small[0].model, "model.joblib")
    Path("raw.csv.dvc").write_text("outs:\n- md5: 0123abcd\n  size: 1\n  path: raw.csv\n")
    scores = {"accuracy": 0.97, "precision": 0.96, "recall": 0.95, "f1": 0.96, "roc_auc": 0.99}
    baseline = {**scores, "accuracy": 0.6, "log_loss": 0.7}
    metrics = {**scores, "log_loss": 0.1, "baseline": baseline, "per_class": {}, "slices": {}}
    Path("metrics.json").write_text(json.dumps(metrics))
    return ["model", "model.joblib", "raw.csv.dvc", "metrics.json"]


def runs_named(name: str) -> int:
    """Runs of this test's experiment with this name."""
    return len(
        mlflow.search_runs(filter_string=f"attributes.run_name = '{name}'", output_format="list")
    )


def test_registers_the_training_run_model_once_and_moves_aliases(
    store: str, small: tuple[train.Fitted, Params, pd.DataFrame], pipeline_outputs: list[str]
) -> None:
    fitted, p, x = small
    tracking.start()
    train.log(fitted, p, x, Path("model.joblib"))
    register.main([*pipeline_outputs, "--alias", "staging"])
    register.main([*pipeline_outputs, "--alias", "production"])

    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{tracking.NAME}'")
    assert version.tags["data_md5"] == "0123abcd"
    assert version.tags["model_md5"] == hashlib.md5(Path("model.joblib").read_bytes()).hexdigest()
    assert version.tags["metric.accuracy"] == "0.97"
    assert "git_revision" in version.tags
    assert str(version.source).startswith("models:/")
    aliases = client.get_registered_model(tracking.NAME).aliases
    assert aliases == {"staging": version.version, "production": version.version}
    assert runs_named("register") == 0


def test_a_model_trained_elsewhere_is_logged_then_registered(
    store: str, pipeline_outputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    register.main(pipeline_outputs)
    assert capsys.readouterr().out.endswith("is @staging\n")
    assert runs_named("register") == 1
    version = MlflowClient().get_model_version_by_alias(tracking.NAME, "staging")
    assert str(version.version) == "1"


def test_missing_model_says_to_train_first(workdir: Path) -> None:
    with pytest.raises(UserError, match=r"model\.joblib not found: run `make train`"):
        register.main(["model", "model.joblib", "raw.csv.dvc", "metrics.json"])


IMAGE = "ghcr.io/example-org/model@sha256:" + "ab" * 32


def test_promotion_moves_the_alias_to_the_version_an_image_serves(
    store: str, pipeline_outputs: list[str]
) -> None:
    register.main([*pipeline_outputs, "--alias", "staging", "--image", IMAGE])
    register.main(["alias", "--alias", "production", "--image", IMAGE])
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{tracking.NAME}'")
    assert version.tags["image"] == IMAGE
    assert client.get_registered_model(tracking.NAME).aliases == {
        "staging": version.version,
        "production": version.version,
    }
    with pytest.raises(UserError, match=r"no version of .* is tagged with image"):
        register.main(["alias", "--alias", "production", "--image", IMAGE.replace("ab", "cd")])


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=Release", "-c", "user.email=release@example.org"]
    return subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.score("I7")
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_reverting_a_release_serves_the_previous_image_and_moves_the_alias_back(
    store: str,
    small: tuple[train.Fitted, Params, pd.DataFrame],
    pipeline_outputs: list[str],
    project: Path,
) -> None:
    folder = project / overlays.OVERLAYS
    first, second = (f"ghcr.io/example-org/model@sha256:{digit * 64}" for digit in "12")

    def release(image: str) -> None:
        """What a merge to main does: register the model with its image, commit the digest."""
        register.main([*pipeline_outputs, "--alias", "staging", "--image", image])
        overlays.set_image(folder, "staging", image)
        git(project, "add", "deploy")
        git(project, "commit", "--quiet", "--message", f"deploy(staging): {image}")

    def rendered() -> str:
        (deployment,) = [
            o for o in manifests.render(folder / "staging", project) if o["kind"] == "Deployment"
        ]
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    git(project, "init", "--quiet")
    release(first)
    joblib.dump(small[0].baseline, "model.joblib")  # the next model: another file, a new version
    release(second)
    assert rendered() == second
    client = MlflowClient()
    versions = {
        v.tags["image"]: v.version
        for v in client.search_model_versions(f"name = '{tracking.NAME}'")
    }
    assert client.get_registered_model(tracking.NAME).aliases["staging"] == versions[second]

    # The rollback: revert the release's commit; `make alias ENV=staging` follows the overlay.
    git(project, "revert", "--no-edit", "HEAD")
    assert rendered() == first
    register.main(["alias", "--alias", "staging", "--image", overlays.image_of(folder, "staging")])
    assert client.get_registered_model(tracking.NAME).aliases["staging"] == versions[first]
    assert versions[first] != versions[second]


def test_a_client_that_lost_a_registration_race_keeps_one_version(
    store: str, pipeline_outputs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    register.main(pipeline_outputs)  # another client registers the file first
    # This client looked before that version existed, so it registers the file too.
    monkeypatch.setattr(register, "version_of", lambda client, model_md5: None)
    register.main([*pipeline_outputs, "--alias", "production"])
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{tracking.NAME}'")
    assert str(version.version) == "1"
    assert client.get_registered_model(tracking.NAME).aliases == {
        "staging": version.version,
        "production": version.version,
    }
