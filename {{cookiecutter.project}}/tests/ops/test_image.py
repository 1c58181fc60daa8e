"""The image: the Dockerfile matches the manifests, and `make image-run` runs what the pod says."""

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import image, manifests, overlays

from conftest import ROOT

Object = dict[str, Any]


@pytest.fixture(scope="module")
def pod() -> Object:
    """The staging pod, as kustomize renders it."""
    return image.pod_of(manifests.render(overlays.OVERLAYS / "staging", ROOT))[1]


def values(options: list[str], flag: str) -> list[str]:
    """Every value given to flag, in order."""
    return [value for key, value in itertools.pairwise(options) if key == flag]


def test_the_run_reproduces_the_rendered_pod(pod: Object) -> None:
    options, arguments = image.run_args(pod, "podman", 8080)
    assert values(options, "--user") == ["1034:1034"]
    assert values(options, "--group-add") == ["1034"]  # the pod's fsGroup
    assert {"--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL"} <= set(options)
    assert values(options, "--security-opt") == ["no-new-privileges"]
    assert values(options, "--tmpfs") == [
        "/tmp:rw,size=268435456,notmpcopyup,U",
        "/var/lib/bentoml:rw,size=67108864,notmpcopyup,U",
    ]
    assert values(options, "--env") == [
        "BENTOML_HOME=/var/lib/bentoml",
        "BENTOML_DO_NOT_TRACK=true",
    ]
    assert values(options, "--cpus") == ["1"]
    assert values(options, "--memory") == ["1073741824"]
    assert values(options, "--publish") == ["127.0.0.1:8080:3000"]
    assert values(options, "--stop-timeout") == ["30"]
    assert "--entrypoint" not in options  # the image's own
    assert arguments == []


def test_docker_gets_only_the_options_it_knows(pod: Object) -> None:
    options, _ = image.run_args(pod, "docker", 8080)
    assert "--read-only" in options
    assert "--read-only-tmpfs=false" not in options
    assert values(options, "--tmpfs")[0] == "/tmp:rw,size=268435456,uid=1034,gid=1034"


def test_a_change_of_the_manifest_changes_the_run(pod: Object) -> None:
    changed = copy.deepcopy(pod)
    container = changed["containers"][0]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "tmp"]
    container["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["command"] = ["python", "-m", "http.server"]
    container["args"] = ["3000"]
    container["env"].append(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "t"}}}
    )
    options, arguments = image.run_args(changed, "podman", 8080)
    assert [value.split(":")[0] for value in values(options, "--tmpfs")] == ["/var/lib/bentoml"]
    assert "--cap-add=NET_BIND_SERVICE" in options
    assert "--read-only" not in options
    assert values(options, "--entrypoint") == ["python"]
    assert arguments == ["-m", "http.server", "3000"]
    assert values(options, "--env")[-1] == "TOKEN"  # from the caller's environment


@pytest.mark.parametrize(
    ("volume", "problem"),
    [
        ({"configMap": {"name": "settings"}}, "only emptyDir volumes run locally"),
        ({"persistentVolumeClaim": {"claimName": "data"}}, "only emptyDir volumes run locally"),
    ],
)
def test_volumes_that_cannot_run_locally_are_one_clear_error(
    pod: Object, volume: Object, problem: str
) -> None:
    changed = copy.deepcopy(pod)
    changed["volumes"] = [
        v if v["name"] != "tmp" else {"name": "tmp", **volume} for v in pod["volumes"]
    ]
    with pytest.raises(UserError, match=f"volume tmp: {problem}"):
        image.run_args(changed, "podman", 8080)


def test_any_kind_with_a_pod_template_runs(pod: Object) -> None:
    rollout = {"kind": "Rollout", "metadata": {"name": "r"}, "spec": {"template": {"spec": pod}}}
    assert image.pod_of([{"kind": "Service", "metadata": {"name": "s"}, "spec": {}}, rollout]) == (
        "r",
        pod,
    )
    with pytest.raises(UserError, match="expected one workload with a pod template, found 2"):
        image.pod_of([rollout, rollout])


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("256Mi", 268435456),
        ("1Gi", 2**30),
        ("500M", 5e8),
        ("250m", 0.25),
        ("1", 1),
        (2, 2),
        ("1.5", 1.5),
    ],
)
def test_kubernetes_quantities(text: str | int, number: float) -> None:
    assert image.quantity(text) == number


@pytest.mark.parametrize("text", ["1.2.3", "10Q", "Mi", "-1"])
def test_a_bad_quantity_is_one_clear_error(text: str) -> None:
    with pytest.raises(UserError, match="is not a Kubernetes quantity"):
        image.quantity(text)


def fake(folder: Path, name: str, status: int) -> None:
    """An executable on PATH that answers every command with status."""
    path = folder / name
    path.write_text(f"#!/bin/sh\nexit {status}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("installed", "outcome"),
    [
        ({"docker": 0, "podman": 0}, "docker"),
        ({"docker": 1, "podman": 0}, "podman"),
        ({"podman": 0}, "podman"),
        ({"docker": 1}, "docker does not answer: start its daemon, or install podman"),
        ({}, "neither docker nor podman found"),
    ],
)
def test_the_engine_is_the_one_that_answers_or_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: dict[str, int], outcome: str
) -> None:
    for name, status in installed.items():
        fake(tmp_path, name, status)
    monkeypatch.setenv("PATH", str(tmp_path))
    if outcome in installed:
        assert image.engine() == outcome
    else:
        with pytest.raises(UserError, match=outcome):
            image.engine()


def test_a_chosen_engine_must_be_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="podman not found on PATH"):
        image.engine("podman")


def test_the_build_needs_the_bento(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run `make bento` first"):
        image.main(["build", "--tag", "t", "--context", str(tmp_path)])


def test_the_dockerfile_matches_the_manifests(pod: Object) -> None:
    dockerfile = (ROOT / "deploy/image/Dockerfile").read_text()
    python = (ROOT / ".python-version").read_text().strip()
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    # Both stages start from the same base, pinned by digest, of the lock's Python.
    assert len(bases) == 2
    assert bases[0] == bases[1]
    assert re.fullmatch(
        re.escape(f"python:{python}-slim-bookworm@sha256:") + "[0-9a-f]{64}", bases[0]
    )
    context = pod["securityContext"]
    assert re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE) == [
        f"{context['runAsUser']}:{context['runAsGroup']}"
    ]
    assert "--require-hashes" in dockerfile
    # SIGTERM, after the preStop pause, leaves the service the rest of the grace period to stop.
    assert re.findall(r"^STOPSIGNAL (\S+)", dockerfile, flags=re.MULTILINE) == ["SIGTERM"]
    pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] - pause >= 20
