"""Container tier (slow): the baked project's image, built by podman and run as its manifest says.

Where podman, runc and debootstrap are present (CI installs them), `make image` builds
deploy/image/Dockerfile from the trained project's Bento on a local stand-in of its base, and
`make image-run` runs it with the settings of the rendered staging pod. Its probes, a prediction and
/metrics answer; SIGTERM stops it cleanly within the grace period; and with the manifest's writable
BENTOML_HOME mount taken out, it fails on the read-only root filesystem.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import local_podman
import pytest
import yaml
from conftest import ENV, RUNNING_PYTHON, free_port, post, run
from local_podman import Podman

pytestmark = pytest.mark.slow

TAG = "localhost/template-tests:dev"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
HOME_MOUNT = "            - name: bentoml-home\n              mountPath: /var/lib/bentoml\n"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if reason := local_podman.missing():
        pytest.skip(reason)
    if RUNNING_PYTHON != "3.11":
        pytest.skip(f"the local base image is Debian bookworm's Python 3.11, not {RUNNING_PYTHON}")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def image(project: Path, podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`make image` of the trained project, once per session."""
    run(["make", "train"], project)
    run(["make", "bento"], project)
    # The base named in FROM, pinned by a digest that cannot be pulled here, stands in locally.
    dockerfile = podman.local_dockerfile(
        project / "deploy/image/Dockerfile", tmp_path_factory.mktemp("image") / "Dockerfile"
    )
    options = "BUILD_OPTIONS=--pull=never --network host"
    run(["make", "image", f"TAG={TAG}", f"DOCKERFILE={dockerfile}", "ENGINE=podman", options],
        project, timeout=1800, env=podman.conf)  # fmt: skip
    return TAG


@pytest.fixture(scope="module")
def pod(project: Path) -> dict[str, Any]:
    """The staging pod, as kustomize renders it."""
    kustomize = ["uv", "run", "--locked", "kubectl", "kustomize", "deploy/overlays/staging"]
    objects = yaml.safe_load_all(run(kustomize, project).stdout)
    (workload,) = [obj for obj in objects if "template" in obj.get("spec", {})]
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


@dataclass
class Container:
    url: str
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def container(
    project: Path, image: str, podman: Podman, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """`make image-run`, as a developer runs it, ready."""
    port, log = free_port(), tmp_path_factory.mktemp("run") / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "image-run", f"TAG={image}", f"PORT={port}", "ENGINE=podman"],
            cwd=project, env=ENV | podman.conf, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    served = Container(f"http://127.0.0.1:{port}", f"{project.name}-staging", process, log)
    try:
        deadline = time.monotonic() + 180
        while not ready(served.url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make image-run did not serve:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield served
    finally:
        if process.poll() is None:
            podman("kill", served.name, check=False)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2):
            return True
    except OSError:
        return False


def test_the_image_runs_as_the_manifest_user_and_holds_no_compiler(
    image: str, podman: Podman, pod: dict[str, Any]
) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    context = pod["securityContext"]
    assert config["User"] == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert config["StopSignal"] == "SIGTERM"
    # No compiler, no test suite of a package, and no file the service's user could change.
    script = (
        "for tool in gcc cc c++ make; do command -v $tool; done;"
        "find /app /home -xdev -name tests; find / -xdev -user 1034 -not -path /var/lib/bentoml"
    )
    found = podman("run", "--rm", "--entrypoint", "sh", image, "-c", script, check=False)
    assert found.stdout.split() == []


def test_the_probes_answer(container: Container, pod: dict[str, Any]) -> None:
    for probe in PROBES:
        path = pod["containers"][0][probe]["httpGet"]["path"]
        with urllib.request.urlopen(f"{container.url}{path}", timeout=5) as response:
            assert response.status == 200, probe


def test_a_prediction_and_the_metrics_answer(container: Container, project: Path) -> None:
    status, answer = post(container.url, (project / "build/example.json").read_bytes())
    assert status == 200
    assert answer["predictions"][0]["label"] in {"benign", "malignant"}  # type: ignore[index]
    with urllib.request.urlopen(f"{container.url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'model_predictions_total{class="' in metrics
    assert "bentoml_service_request_total" in metrics


def test_the_container_has_the_pods_restrictions(container: Container, podman: Podman) -> None:
    """What the running process got, read inside the container."""
    status = podman("exec", container.name, "cat", "/proc/1/status").stdout
    assert "\nUid:\t1034\t1034\t1034\t1034\n" in status
    assert "\nCapEff:\t0000000000000000\n" in status
    assert "\nNoNewPrivs:\t1\n" in status
    lines = podman("exec", container.name, "cat", "/proc/mounts").stdout.splitlines()
    options = {fields[1]: fields[3].split(",") for fields in map(str.split, lines)}
    assert options["/"][0] == "ro"
    assert "size=262144k" in options["/tmp"]
    assert "size=65536k" in options["/var/lib/bentoml"]


def test_sigterm_stops_it_cleanly_within_the_grace_period(
    container: Container, podman: Podman, pod: dict[str, Any]
) -> None:
    """As the kubelet stops it: SIGTERM after the preStop pause, SIGKILL at the grace period."""
    pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    left = pod["terminationGracePeriodSeconds"] - pause
    start = time.monotonic()
    podman("stop", container.name, timeout=120)  # the stop timeout the manifest's grace set
    assert container.process.wait(timeout=30) == 0, container.log.read_text()[-3000:]
    assert time.monotonic() - start < left
    assert "Traceback" not in container.log.read_text()


def test_without_the_writable_bentoml_home_it_fails_on_the_read_only_root(
    project: Path, image: str, podman: Podman
) -> None:
    """The negative control: the run follows the manifest, so dropping its mount breaks it."""
    deployment = project / "deploy/base/deployment.yaml"
    original = deployment.read_text()
    assert HOME_MOUNT in original
    deployment.write_text(original.replace(HOME_MOUNT, ""))
    try:
        result = run(
            ["make", "image-run", f"TAG={image}", f"PORT={free_port()}", "ENGINE=podman"],
            project, timeout=300, check=False, env=podman.conf,
        )  # fmt: skip
    finally:
        deployment.write_text(original)
    assert result.returncode != 0
    assert "Read-only file system: '/var/lib/bentoml" in result.stdout + result.stderr
