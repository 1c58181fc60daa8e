"""Deploy: a release changes one image line; overlays render and hold the restricted profile."""

import copy
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from tumor_classifier import deploy
from tumor_classifier.cli import UserError
from tumor_classifier.params import Params

# The Kubernetes name of every object: the project's name.
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
IMAGE = f"ghcr.io/example-org/{NAME}@sha256:" + "ab12" * 16


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what `make manifests` reads, free to change."""
    for folder in ("deploy", "argocd"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture(scope="session")
def pod() -> dict[str, Any]:
    """The production pod, as kustomize renders it."""
    objects = deploy.render(deploy.OVERLAYS / "production", ROOT)
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_shipped_manifests_pass(project: Path) -> None:
    assert deploy.manifests(project) == [
        "deploy/overlays/production: 9 objects valid",
        "deploy/overlays/staging: 9 objects valid",
        "argocd: 2 applications sync overlays that render",
    ]


def test_slo_file_holds_the_thresholds_of_params(project_params: Params) -> None:
    # The alert thresholds have one home, params.yaml; slo.yaml is derived from it and committed.
    assert (ROOT / deploy.SLO).read_text() == deploy.slo_manifest(project_params)


def test_stale_slo_file_is_rewritten_and_fails_once(project: Path) -> None:
    edit(project / "params.yaml", "    p99_ms: 100", "    p99_ms: 250")
    with pytest.raises(UserError, match=r"slo.yaml did not match params.yaml and is rewritten"):
        deploy.manifests(project)
    deploy.manifests(project)
    (rule,) = [
        obj
        for obj in deploy.render(deploy.OVERLAYS / "staging", project)
        if obj["kind"] == "PrometheusRule"
    ]
    exprs = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert exprs["ServiceLatencyAboveSLO"].endswith("> 0.25")
    assert exprs["ServiceErrorRateAboveSLO"].endswith("> 0.01")
    assert exprs["ModelFeatureDrift"].endswith("> 0.2")


def test_set_image_changes_only_the_image_line_and_is_idempotent(project: Path) -> None:
    before = snapshot(project)
    patch = project / deploy.OVERLAYS / "staging/deployment.yaml"
    assert deploy.set_image(project / deploy.OVERLAYS, "staging", IMAGE) == [patch]
    after = snapshot(project)
    assert [path for path in before if before[path] != after[path]] == [patch]
    changed = [
        (old, new)
        for old, new in zip(
            before[patch].decode().splitlines(), after[patch].decode().splitlines(), strict=True
        )
        if old != new
    ]
    assert [new for _, new in changed] == [f"          image: {IMAGE}"]
    assert deploy.set_image(project / deploy.OVERLAYS, "staging", IMAGE) == []
    assert snapshot(project) == after
    deploy.manifests(project)


@pytest.mark.score("I7")
def test_promotion_copies_the_staging_image_to_production(project: Path) -> None:
    overlays = project / deploy.OVERLAYS
    deploy.set_image(overlays, "staging", IMAGE)
    assert deploy.image_of(overlays, "staging") == IMAGE
    assert deploy.image_of(overlays, "production") != IMAGE
    deploy.set_image(overlays, "production", deploy.image_of(overlays, "staging"))
    assert deploy.image_of(overlays, "production") == IMAGE


def test_set_image_keeps_line_endings_quotes_and_comments(tmp_path: Path) -> None:
    overlay = tmp_path / "qa"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_bytes(b"resources: []\r\n")
    (overlay / "patch.yaml").write_bytes(
        b'containers:\r\n  - name: a\r\n    image: "old:1"  # pinned\r\n'
        b"  - image: old@sha256:00\r\n"
    )
    deploy.set_image(tmp_path, "qa", IMAGE)
    assert (overlay / "patch.yaml").read_bytes() == (
        f"containers:\r\n  - name: a\r\n    image: {IMAGE}  # pinned\r\n  - image: {IMAGE}\r\n"
    ).encode()
    assert (overlay / "kustomization.yaml").read_bytes() == b"resources: []\r\n"


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/example-org/tumor-classifier:latest",
        "ghcr.io/example-org/tumor-classifier@sha256:abc123",
        "ghcr.io/example-org/tumor-classifier:v1@sha256:" + "ab12" * 16,
        "ghcr.io/Example-Org/tumor-classifier@sha256:" + "ab12" * 16,
        "@sha256:" + "ab12" * 16,
    ],
)
def test_set_image_refuses_anything_but_an_image_by_digest(project: Path, image: str) -> None:
    with pytest.raises(UserError, match="not an image by digest"):
        deploy.set_image(project / deploy.OVERLAYS, "staging", image)


@pytest.mark.parametrize("env", ["qa", "../base", ""])
def test_set_image_refuses_an_unknown_environment(project: Path, env: str) -> None:
    before = snapshot(project)
    with pytest.raises(UserError, match=r"no such overlay in .*; one of production, staging$"):
        deploy.set_image(project / deploy.OVERLAYS, env, IMAGE)
    assert snapshot(project) == before


def test_command_line_fails_in_one_line(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tumor_classifier.deploy", "set-image", "staging", "nginx:latest"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "deploy: nginx:latest: not an image by digest, <repository>@sha256:<64 hex digits>\n"
    )


def test_command_line_checks_every_overlay(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tumor_classifier.deploy", "manifests"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" objects valid\n") == 2


def test_shipped_pod_holds_the_restricted_profile(pod: dict[str, Any]) -> None:
    assert deploy.pod_problems(pod) == []
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == 1034
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    home = next(env["value"] for env in container["env"] if env["name"] == "BENTOML_HOME")
    assert {"/tmp", home} <= mounts
    # The Bento itself lives in the image's home: a volume there would hide it.
    assert not [mount for mount in mounts if mount.startswith("/home/bentoml")]


Breach = Callable[[dict[str, Any]], None]
BREACHES: list[tuple[Breach, str]] = [
    (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser is not a numeric non-root ID"),
    (lambda p: p["securityContext"].pop("runAsGroup"), "runAsGroup is not a numeric non-root ID"),
    (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile is not RuntimeDefault"),
    (lambda p: p.update(automountServiceAccountToken=True), "automountServiceAccountToken"),
    (lambda p: p.update(hostNetwork=True), "hostNetwork is set"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "h is a hostPath"),
    (
        lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation is not false",
    ),
    (
        lambda p: p["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem is not true",
    ),
    (
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]),
        "capabilities do not drop ALL",
    ),
    (lambda p: p["containers"][0]["resources"].pop("limits"), "no cpu limits"),
    (lambda p: p["containers"][0].pop("readinessProbe"), "no readinessProbe"),
    (lambda p: p["containers"][0].update(image="ghcr.io/o/p:1"), "is not pinned by digest"),
]


@pytest.mark.parametrize(("breach", "problem"), BREACHES)
def test_each_breach_of_the_profile_is_reported(
    pod: dict[str, Any], breach: Breach, problem: str
) -> None:
    changed = copy.deepcopy(pod)
    breach(changed)
    assert [found for found in deploy.pod_problems(changed) if problem in found]


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
        deploy.manifests(project)
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
        deploy.manifests(project)


def test_dashboard_ships_as_json_for_the_grafana_sidecar(project: Path) -> None:
    edit(project / "deploy/base/dashboard.json", '"panels": [', '"panels": [,')
    with pytest.raises(UserError, match=rf"{NAME}.json is not JSON"):
        deploy.manifests(project)


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


def test_image_runs_the_python_of_the_lock_as_bentoml_user() -> None:
    dockerfile = (ROOT / "deploy/image/Dockerfile").read_text()
    python = (ROOT / ".python-version").read_text().strip()
    bases = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert bases == [f"python:{python}-slim-bookworm"] * 2
    assert "USER 1034:1034" in dockerfile
