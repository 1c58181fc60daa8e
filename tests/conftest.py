"""Shared fixtures: bake the template in-process, and one installed project for the slow tier."""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
DEFAULTS: dict[str, Any] = json.loads((TEMPLATE / "cookiecutter.json").read_text())
PROMPTS = [key for key in DEFAULTS if not key.startswith("_")]
# The slow tier bakes for the interpreter running the tests, so CI's matrix covers each version.
RUNNING_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

Bake = Callable[..., Path]


# What the post-generation hook's `uv lock` sees when a bake is not to be locked: no index and an
# empty cache, as on a machine offline. The hook then says so in one line and commits no uv.lock,
# in a second instead of the tens of seconds a resolution takes.
OFFLINE = {"UV_OFFLINE": "1", "UV_CACHE_DIR": str(Path(tempfile.gettempdir()) / "no-uv-cache")}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with these values, for the hooks that cookiecutter runs in subprocesses."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def bake_into(output_dir: Path, lock: bool = False, **answers: str) -> Path:
    """Bake the template with these answers (defaults otherwise) and return the project path;
    with lock, the first commit holds a uv.lock resolved from the package index."""
    with environment({} if lock else OFFLINE):
        return Path(
            cookiecutter(
                str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)
            )
        )


@pytest.fixture
def bake(tmp_path: Path) -> Bake:
    return lambda **answers: bake_into(tmp_path, **answers)


# The environment of commands run in a baked project: its own uv environment, not the template's
# (uv run sets VIRTUAL_ENV), and no telemetry, as its Makefile exports.
ENV = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"} | {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "1",
}


def run(
    cmd: list[str],
    cwd: Path,
    timeout: float = 900,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (env added to ENV); unless check is False, fail the test when it fails."""
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV | (env or {})
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


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


def post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    """POST a JSON body to the service's /predict: the status and the decoded answer."""
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# Commits in baked projects: a fixed identity, no signing, none of the machine's hooks.
GIT = [
    "git",
    "-c",
    "user.name=Template Tests",
    "-c",
    "user.email=tests@example.org",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
]


def git(cwd: Path, *args: str) -> str:
    return run([*GIT, *args], cwd).stdout


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One baked project with its environment installed, shared by every slow test."""
    path = bake_into(tmp_path_factory.mktemp("slow"), lock=True, python_version=RUNNING_PYTHON)
    run(["make", "setup"], path)
    return path


@pytest.fixture
def trained(project: Path) -> Path:
    """The shared project, trained: a no-op unless an earlier test changed its inputs."""
    run(["make", "train"], project)
    return project
