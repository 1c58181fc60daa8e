"""`make manifests`: overlays render, hold the restricted profile, and Argo CD syncs them."""

import contextlib
import copy
import json
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, Served, edit
from tumor_classifier import params
from tumor_classifier.cli import UserError
from tumor_classifier.ops import manifests
from tumor_classifier.ops.overlays import OVERLAYS
from tumor_classifier.params import SloParams

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


# A PromQL series: a metric name followed by its label matchers.
SERIES = re.compile(r"([A-Za-z_:][\w:]*)\{")


def canary_problems(objects: list[dict[str, Any]], slo: SloParams) -> list[str]:
    """What keeps an overlay's release from being canaried: a Rollout of its Deployment whose every
    partial weight is followed by an analysis that holds the canary to serve.slo, no breach
    allowed, before the next weight."""
    rollouts = [o for o in objects if o["kind"] == "Rollout"]
    if not rollouts:
        return ["no Rollout"]
    templates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "AnalysisTemplate"}
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    limits = {
        "error-rate": slo.error_rate,
        "p99-latency": slo.p99_ms / 1000,
        "rejected-rate": slo.rejected_rate,
    }
    problems = []
    for rollout in rollouts:
        spec = rollout["spec"]
        if spec.get("workloadRef", {}).get("name") not in deployments:
            problems.append("the Rollout runs no Deployment of the overlay")
        steps = spec["strategy"].get("canary", {}).get("steps", [])
        weights = [(i, s["setWeight"]) for i, s in enumerate(steps) if "setWeight" in s]
        if not weights:
            problems.append("no canary step: the new version takes all traffic at once")
        for i, weight in weights:
            after = steps[i + 1] if i + 1 < len(steps) else {}
            names = [t["templateName"] for t in after.get("analysis", {}).get("templates", [])]
            if not names:
                problems.append(f"weight {weight}% is not judged by an analysis")
            for name in names:
                if name not in templates:
                    problems.append(f"weight {weight}%: no AnalysisTemplate {name}")
                    continue
                metrics = {m["name"]: m for m in templates[name]["spec"]["metrics"]}
                for metric, limit in limits.items():
                    found = metrics.get(metric, {})
                    if found.get("successCondition") != f"result[0] <= {limit:g}":
                        problems.append(f"{name}: {metric} is not held to {limit:g}")
                    if found.get("failureLimit") != 0:
                        problems.append(f"{name}: {metric} tolerates a breach")
    return list(dict.fromkeys(problems))  # two steps may share one template


@pytest.mark.score("I6")
def test_each_release_is_canaried_against_the_slo(served: Served, project: Path) -> None:
    """Both overlays release by canary: 10 % then 50 % of the replicas, each judged by Prometheus
    on the canary's own pods against serve.slo, on series the service really exports."""
    p = params.load(project / "params.yaml")
    for overlay in ("staging", "production"):
        objects = manifests.render(OVERLAYS / overlay, project)
        assert canary_problems(objects, p.serve.slo) == []
    (template,) = [o for o in objects if o["kind"] == "AnalysisTemplate"]
    queried = {
        name
        for metric in template["spec"]["metrics"]
        for name in SERIES.findall(metric["provider"]["prometheus"]["query"])
    }
    # The service exports each series once it has answered and refused a request.
    row = served.test.drop(columns=["churned", "customer_id"]).dropna().head(1)
    good = json.dumps({"records": json.loads(row.to_json(orient="records"))}).encode()
    bad = json.dumps({"records": [{"plan": "enterprise"}]}).encode()
    for body in (good, bad):
        request = urllib.request.Request(
            f"{served.url}/predict", body, {"content-type": "application/json"}
        )
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=30).close()
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=30) as response:
        exported = set(re.findall(r"^([A-Za-z_:][\w:]*)[{ ]", response.read().decode(), re.M))
    assert queried == {
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
        "model_rejected_requests_total",
    }
    assert queried <= exported


@pytest.mark.parametrize(
    ("path", "old", "new", "problem"),
    [
        (
            "deploy/base/rollout.yaml",
            "        - analysis: *judged\n",
            "",
            "weight 50% is not judged by an analysis",
        ),
        (
            "deploy/base/analysistemplate.yaml",
            "      failureLimit: 0\n",
            "      failureLimit: 3\n",
            "{name}-canary: error-rate tolerates a breach",
        ),
        (
            "params.yaml",
            "p99_ms: 100",
            "p99_ms: 250",
            "{name}-canary: p99-latency is not held to 0.25",
        ),
    ],
)
def test_a_release_without_its_judge_is_not_canaried(
    project: Path, path: str, old: str, new: str, problem: str
) -> None:
    """The negative cases: an unjudged weight, a tolerated breach, SLO and analysis apart."""
    edit(project / path, old, new)
    objects = manifests.render(OVERLAYS / "production", project)
    slo = params.load(project / "params.yaml").serve.slo
    assert canary_problems(objects, slo) == [problem.format(name=NAME)]
