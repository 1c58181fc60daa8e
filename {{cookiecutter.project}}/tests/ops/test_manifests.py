"""`make manifests`: overlays render, hold the restricted profile, and Argo CD syncs them."""

import copy
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.ops import manifests
from tumor_classifier.ops.overlays import OVERLAYS

from conftest import ROOT, edit

# The Kubernetes name of every object: the project's name.
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
IMAGE = f"ghcr.io/example-org/{NAME}@sha256:" + "ab12" * 16


@pytest.fixture(scope="session")
def pod() -> dict[str, Any]:
    """The production pod, as kustomize renders it."""
    objects = manifests.render(OVERLAYS / "production", ROOT)
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_shipped_manifests_pass(project: Path) -> None:
    assert manifests.manifests(project) == [
        "deploy/overlays/production: 13 objects valid",
        "deploy/overlays/staging: 13 objects valid",
        "argocd: 2 applications sync overlays that render",
    ]


def test_an_overlay_runs_the_stream_consumer_by_its_component(project: Path) -> None:
    kustomization = project / OVERLAYS / "staging/kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text() + "components:\n  - ../../components/stream\n"
    )
    objects = manifests.render(OVERLAYS / "staging", project)
    assert manifests.overlay_problems(objects) == []
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    images = {
        n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in deployments.items()
    }
    assert images[f"{NAME}-stream"] == images[NAME]  # the release reaches the consumer too
    (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"{NAME}-stream"
    # The consumer's pod is held to the service's rules: a root user fails.
    pod = deployments[f"{NAME}-stream"]["spec"]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 0
    assert manifests.overlay_problems(objects) == [
        f"Deployment/{NAME}-stream: container stream: runAsUser is not a numeric non-root ID"
    ]


def test_command_line_checks_every_overlay(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tumor_classifier.ops.manifests"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" objects valid\n") == 2


def test_shipped_pod_holds_the_restricted_profile(pod: dict[str, Any]) -> None:
    assert manifests.pod_problems(pod) == []
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == 1034
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    home = next(env["value"] for env in container["env"] if env["name"] == "BENTOML_HOME")
    assert {"/tmp", home} <= mounts
    # The Bento itself lives in the image's home: a volume there would hide it.
    assert not [mount for mount in mounts if mount.startswith("/home/bentoml")]


Breach = Callable[[dict[str, Any]], None]
# The rules checkov has no check for; the template's tests prove that checkov, which `make
# manifests` runs too, reports each of the others.
BREACHES: list[tuple[Breach, str]] = [
    (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser is not a numeric non-root ID"),
    (lambda p: p["securityContext"].pop("runAsGroup"), "runAsGroup is not a numeric non-root ID"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "h is a hostPath"),
    (lambda p: p["containers"][0].pop("startupProbe"), "no startupProbe"),
]


@pytest.mark.parametrize(("breach", "problem"), BREACHES)
def test_each_breach_of_the_profile_is_reported(
    pod: dict[str, Any], breach: Breach, problem: str
) -> None:
    changed = copy.deepcopy(pod)
    breach(changed)
    assert [found for found in manifests.pod_problems(changed) if problem in found]


@pytest.mark.parametrize(
    ("path", "old", "new", "problem"),
    [
        (
            "deploy/overlays/staging/deployment.yaml",
            "spec:\n",
            "spec:\n  replicas: 2\n",
            "Deployment/{name}: sets replicas, which its HorizontalPodAutoscaler owns",
        ),
        (
            "deploy/overlays/staging/deployment.yaml",
            "        - name: service\n",
            "        - name: service\n          imagePulPolicy: Always\n",
            "('imagePulPolicy' was unexpected)",
        ),
        (
            "deploy/base/prometheusrule.yaml",
            'model_feature_drift{namespace="NAMESPACE", ',
            "model_feature_drift{",
            "rule ModelFeatureDrift selects namespace []",
        ),
        (
            "argocd/staging.yaml",
            "path: deploy/overlays/staging",
            "path: deploy/overlays/qa",
            "Application/{name}-staging: path deploy/overlays/qa is not an overlay",
        ),
        (
            "argocd/production.yaml",
            "namespace: {name}-production",
            "namespace: default",
            "destination namespace default is not {name}-production",
        ),
        (
            "argocd/project.yaml",
            "    - group: policy\n      kind: PodDisruptionBudget\n",
            "",
            "project {name} does not allow PodDisruptionBudget",
        ),
        (
            "deploy/base/kustomization.yaml",
            "  - pdb.yaml\n",
            "  - pdb.yaml\n  - missing.yaml\n",
            "missing.yaml",
        ),
        (
            "argocd/staging.yaml",
            "pod-security.kubernetes.io/enforce: restricted",
            "pod-security.kubernetes.io/enforce: baseline",
            "Application/{name}-staging: creates its namespace without enforcing the restricted",
        ),
        (
            "deploy/overlays/staging/kustomization.yaml",
            "namespace: {name}-staging\n",
            "",
            "fieldPath `metadata.namespace` is missing",  # no namespace for the alert rules
        ),
    ],
)
def test_a_broken_manifest_fails_in_one_line(
    project: Path, path: str, old: str, new: str, problem: str
) -> None:
    edit(project / path, old.replace("{name}", NAME), new)
    with pytest.raises(UserError) as error:
        manifests.manifests(project)
    assert problem.replace("{name}", NAME) in str(error.value)
    assert "\n" not in str(error.value)


def test_an_overlay_may_not_render_its_namespace(project: Path) -> None:
    # Argo CD creates the namespace: a Namespace object is cluster-scoped, which no project allows.
    (project / "deploy/base/namespace.yaml").write_text(
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAME}\n"
    )
    edit(
        project / "deploy/base/kustomization.yaml",
        "  - pdb.yaml\n",
        "  - pdb.yaml\n  - namespace.yaml\n",
    )
    with pytest.raises(UserError, match=rf"renders Namespace/{NAME}-staging without a namespace"):
        manifests.manifests(project)


def test_dashboard_ships_as_json_for_the_grafana_sidecar(project: Path) -> None:
    edit(project / "deploy/base/dashboard.json", '"panels": [', '"panels": [,')
    with pytest.raises(UserError, match=rf"{NAME}.json is not JSON"):
        manifests.manifests(project)


def test_applications_sync_both_overlays_automatically() -> None:
    applications = [
        yaml.safe_load((ROOT / f"argocd/{env}.yaml").read_text())
        for env in ("staging", "production")
    ]
    for app in applications:
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}
        assert "CreateNamespace=true" in policy["syncOptions"]
        labels = policy["managedNamespaceMetadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert policy["retry"]["limit"] > 0
