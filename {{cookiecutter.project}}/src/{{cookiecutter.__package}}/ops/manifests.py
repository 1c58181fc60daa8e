"""`make manifests`: render every overlay and check it offline, with kubernetes-validate, checkov
and the few rules no tool has; the Argo CD objects sync overlays that render."""

import argparse
import fnmatch
import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from .. import cli
from ..params import load
from . import slo
from .overlays import OVERLAYS

ARGOCD = Path("argocd")

# The oldest Kubernetes minor the manifests must run on: its schemas refuse a field that a cluster
# of that version would refuse.
KUBERNETES_VERSION = "1.33"
# kubernetes-validate knows the core kinds only; the template's tests validate these custom
# resources against the CRDs of Prometheus Operator, Argo CD, Argo Rollouts and KEDA.
CRD_GROUPS = {"monitoring.coreos.com", "argoproj.io", "keda.sh"}

# Pod Security Standards, restricted profile: the volume types it allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
NAMESPACE_MATCHER = re.compile(r'namespace="([^"]*)"')
THRESHOLD = re.compile(r" > (\S+)\s*$")
# What the canary analysis judges, and the threshold of slo.yaml (serve.slo) each measure holds.
CANARY_MEASURES = {
    "error-rate": "error_rate",
    "p99-latency": "p99_seconds",
    "rejected-rate": "rejected_rate",
}
CONDITION = re.compile(r"result\[0\] <= (\S+)")
SELECTOR = re.compile(r"[A-Za-z_:][\w:]*\{(?!\{)")  # a series selector, not an Argo argument
# The canary's pods: Argo Rollouts writes the hash of their template into args.canary-hash.
CANARY_PODS = re.compile(r'rollouts_pod_template_hash="\{\{args\.canary-hash\}\}"')

Object = dict[str, Any]


def render(path: Path, root: Path) -> list[Object]:
    """The objects kustomize renders from a folder."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise cli.UserError("kubectl not found: `make setup` installs it")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], cwd=root, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise cli.UserError(f"{path}: {' '.join(result.stderr.split()) or 'kustomize failed'}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_problems(obj: Object) -> list[str]:
    """Strict validation: an unknown or misspelt field is an error, not silently dropped."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        return [f"{where}: {error.message}" if where else error.message]
    except kubernetes_validate.SchemaNotFoundError:
        if obj["apiVersion"].split("/")[0] not in CRD_GROUPS:
            return [f"no Kubernetes {KUBERNETES_VERSION} schema for {obj['apiVersion']}"]
    return []


def pod_problems(pod: Object, serves: bool = True) -> list[str]:
    """The rules of a pod that checkov has no check for (it covers privileges, capabilities,
    seccomp, root, host namespaces, resources, liveness and readiness probes, digests)."""
    problems = []
    for volume in pod.get("volumes", []):
        # The restricted Pod Security Standard allows these volume types only.
        problems += [
            f"volume {volume['name']} is a {kind}"
            for kind in set(volume) - {"name"} - RESTRICTED_VOLUMES
        ]
    pod_context = pod.get("securityContext", {})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name = f"container {container['name']}"
        context = container.get("securityContext", {})
        for key in ("runAsUser", "runAsGroup"):
            # runAsNonRoot with UID 0 passes every check and then fails at start; checkov checks
            # runAsNonRoot alone (and UIDs above 10000, which BentoML's 1034 is not).
            value = context.get(key, pod_context.get(key))
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name}: {key} is not a numeric non-root ID")
        if serves and container in pod["containers"] and "startupProbe" not in container:
            # A model loads for seconds: without a startup probe, liveness kills a slow start.
            problems.append(f"{name}: no startupProbe")
    return problems


def rule_problems(rule: Object, namespace: str) -> list[str]:
    """An alert of one environment reads that environment's series, against a numeric threshold."""
    name = rule.get("alert") or rule.get("record")
    problems = []
    selected = set(NAMESPACE_MATCHER.findall(rule["expr"]))
    if selected != {namespace}:
        problems.append(f"rule {name} selects namespace {sorted(selected)}, not {namespace}")
    if threshold := THRESHOLD.search(rule["expr"]):
        try:
            float(threshold[1])
        except ValueError:
            problems.append(f"rule {name} compares with {threshold[1]}, not a number")
    return problems


def overlay_problems(objects: list[Object]) -> list[str]:
    """One namespace, nothing cluster-scoped, schemas, the restricted profile, the HPA's ownership
    of replicas, alert rules, dashboards."""
    unplaced = [
        f"{o['kind']}/{o['metadata']['name']}" for o in objects if "namespace" not in o["metadata"]
    ]
    if unplaced:
        # Argo CD creates the namespace (managedNamespaceMetadata): the project allows no
        # cluster-scoped kind, so that no repository can create or relabel a namespace.
        return [
            f"renders {', '.join(unplaced)} without a namespace: a cluster-scoped kind, which "
            "Argo CD may not sync here, or an overlay without `namespace:`"
        ]
    namespaces = {obj["metadata"]["namespace"] for obj in objects}
    if len(namespaces) != 1:
        return [
            f"renders into {len(namespaces)} namespaces ({', '.join(sorted(namespaces))}), not one"
        ]
    namespace = namespaces.pop()
    problems = []
    scaled = {
        (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])
        for hpa in objects
        if hpa["kind"] == "HorizontalPodAutoscaler"
    }
    # A Rollout runs a Deployment's template (workloadRef) and scales that Deployment itself.
    scaled |= {
        (rollout["spec"]["workloadRef"]["kind"], rollout["spec"]["workloadRef"]["name"])
        for rollout in objects
        if rollout["kind"] == "Rollout"
        and ("Rollout", rollout["metadata"]["name"]) in scaled
        and "workloadRef" in rollout["spec"]
    }
    for obj in objects:
        kind, meta, spec = obj["kind"], obj["metadata"], obj.get("spec", {})
        found = schema_problems(obj)
        if "jobTemplate" in spec:  # a CronJob's pods run to completion: no probes
            found += pod_problems(spec["jobTemplate"]["spec"]["template"]["spec"], serves=False)
        if "template" in spec:
            found += pod_problems(spec["template"]["spec"])
            if (kind, meta["name"]) in scaled and "replicas" in spec:
                found.append("sets replicas, which its HorizontalPodAutoscaler owns")
        if kind == "PrometheusRule":
            found += [
                problem
                for group in spec["groups"]
                for rule in group["rules"]
                for problem in rule_problems(rule, namespace)
            ]
        for key, value in obj.get("data", {}).items() if kind == "ConfigMap" else ():
            if key.endswith(".json"):
                try:
                    json.loads(value)
                except json.JSONDecodeError as error:
                    found.append(f"{key} is not JSON: {error.msg} at line {error.lineno}")
        problems += [f"{kind}/{meta['name']}: {problem}" for problem in found]
    return problems


def canary_problems(objects: list[Object], thresholds: dict[str, float]) -> list[str]:
    """A release reaches all the traffic only through canary steps, each judged by an analysis of
    the canary pods' own series against the SLO of params.yaml."""
    rollouts = [o for o in objects if o["kind"] == "Rollout"]
    if len(rollouts) != 1:
        return [f"{len(rollouts)} Rollouts, not one: a release must go through canary steps"]
    (rollout,) = rollouts
    name, spec = f"Rollout/{rollout['metadata']['name']}", rollout["spec"]
    problems = []
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    workload = spec.get("workloadRef", {})
    if workload and (workload.get("kind"), workload.get("name")) not in {
        ("Deployment", d) for d in deployments
    }:
        problems.append(f"{name}: runs {workload.get('name')}, no Deployment of this overlay")
    canary = spec.get("strategy", {}).get("canary", {})
    steps: list[Object] = canary.get("steps", [])
    weights = [step["setWeight"] for step in steps if "setWeight" in step]
    if not weights or weights != sorted(set(weights)) or weights[0] <= 0 or weights[-1] >= 100:
        problems.append(
            f"{name}: canary weights {weights} do not rise from above 0% to below 100% "
            "(after the last step the release takes all the traffic)"
        )
    # A background analysis judges every step; else each weight needs an analysis step after it.
    background = [t["templateName"] for t in canary.get("analysis", {}).get("templates", [])]
    judges = set(background)
    for step, after in itertools.pairwise([*steps, {}]):
        named = [t["templateName"] for t in after.get("analysis", {}).get("templates", [])]
        if "setWeight" in step and not (named or background):
            problems.append(f"{name}: no analysis judges the canary at {step['setWeight']}%")
        judges |= set(named)
    templates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "AnalysisTemplate"}
    namespace = rollout["metadata"].get("namespace", "")
    for judge in sorted(judges):
        if judge not in templates:
            problems.append(f"{name}: its analysis {judge} is not in this overlay")
            continue
        found = analysis_problems(templates[judge], namespace, thresholds)
        problems += [f"AnalysisTemplate/{judge}: {problem}" for problem in found]
    return problems


def analysis_problems(template: Object, namespace: str, thresholds: dict[str, float]) -> list[str]:
    """Each SLO measure of the canary's pods in this namespace, held to its threshold."""
    metrics = {m["name"]: m for m in template["spec"].get("metrics", [])}
    problems = []
    for measure, key in CANARY_MEASURES.items():
        if measure not in metrics:
            problems.append(f"no {measure} measure")
            continue
        condition = metrics[measure].get("successCondition", "")
        bound = CONDITION.fullmatch(condition)
        try:
            held = bound is not None and math.isclose(float(bound[1]), thresholds[key])
        except ValueError:  # a placeholder kustomize did not replace
            held = False
        if not held:
            problems.append(
                f"{measure} passes on `{condition}`, not `result[0] <= {thresholds[key]:g}` "
                "(serve.slo in params.yaml)"
            )
        if metrics[measure].get("failureLimit", 0) != 0:  # 0, Argo Rollouts' default: abort at once
            problems.append(f"{measure} tolerates a breach (failureLimit must be 0)")
        query = metrics[measure].get("provider", {}).get("prometheus", {}).get("query", "")
        selected = set(NAMESPACE_MATCHER.findall(query))
        if selected != {namespace}:
            problems.append(f"{measure} selects namespace {sorted(selected)}, not {namespace}")
        if len(SELECTOR.findall(query)) != len(CANARY_PODS.findall(query)):
            problems.append(f"{measure} reads pods other than the canary's (args.canary-hash)")
    return problems


def group_of(obj: Object) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def application_problems(
    app: Object, projects: dict[str, Object], overlays: dict[str, list[Object]]
) -> list[str]:
    """An Application syncs an overlay that renders, into its namespace, as its project allows."""
    spec, source, destination = app["spec"], app["spec"]["source"], app["spec"]["destination"]
    objects = overlays.get(source["path"].strip("/"))
    if objects is None:
        return [f"path {source['path']} is not an overlay ({', '.join(sorted(overlays))})"]
    namespace = next(
        (o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]), ""
    )
    problems = []
    if destination.get("namespace") != namespace:
        problems.append(f"destination namespace {destination.get('namespace')} is not {namespace}")
    sync = spec.get("syncPolicy", {})
    if "CreateNamespace=true" not in sync.get("syncOptions", []):
        problems.append("does not create its namespace (syncOptions CreateNamespace=true)")
    labels = sync.get("managedNamespaceMetadata", {}).get("labels", {})
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        problems.append("creates its namespace without enforcing the restricted profile")
    project = projects.get(spec["project"])
    if project is None:
        return [*problems, f"project {spec['project']} is not defined"]
    allowed = project["spec"]
    if not any(fnmatch.fnmatch(source["repoURL"], repo) for repo in allowed.get("sourceRepos", [])):
        problems.append(f"project {spec['project']} does not allow {source['repoURL']}")
    if not any(
        fnmatch.fnmatch(destination.get("namespace", ""), allowed_destination.get("namespace", ""))
        and allowed_destination.get("server") == destination.get("server")
        for allowed_destination in allowed.get("destinations", [])
    ):
        problems.append(f"project {spec['project']} does not allow destination {namespace}")
    for obj in objects:
        if {"group": group_of(obj), "kind": obj["kind"]} not in allowed.get(
            "namespaceResourceWhitelist", []
        ):
            problems.append(f"project {spec['project']} does not allow {obj['kind']}")
    return problems


CHECKOV = ["--framework", "kubernetes", "--skip-download", "--quiet", "--output", "json"]


def checkov_problems(overlays: dict[str, list[Object]], checkov: str) -> list[str]:
    """Every failed checkov check of the rendered overlays; a skip needs its reason on the object
    (a `checkov.io/skip` annotation), so each one is a reviewed decision."""
    with tempfile.TemporaryDirectory() as folder:
        for name, objects in overlays.items():
            (Path(folder) / f"{Path(name).name}.yaml").write_text(yaml.safe_dump_all(objects))
        result = subprocess.run(
            [checkov, "--directory", folder, *CHECKOV], capture_output=True, text=True
        )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise cli.UserError(f"checkov failed: {result.stderr.strip()[-300:]}") from None
    failed = report.get("results", {}).get("failed_checks", []) if isinstance(report, dict) else []
    return [
        f"{OVERLAYS / Path(check['file_path']).stem}: {check['resource']}: "
        f"{check['check_id']} {check['check_name']}"
        for check in failed
    ]


def manifests(root: Path, checkov: str | None = None) -> list[str]:
    """Check every overlay and the Argo CD objects of the project at root; what passed."""
    slo.sync(root)
    overlays = {
        path.parent.relative_to(root).as_posix(): render(path.parent.relative_to(root), root)
        for path in sorted((root / OVERLAYS).glob("*/kustomization.yaml"))
    }
    if not overlays:
        raise cli.UserError(f"{OVERLAYS}: no overlay")
    thresholds = slo.thresholds(load(root / "params.yaml"))
    problems = [
        f"{name}: {problem}"
        for name, objects in overlays.items()
        for problem in [*overlay_problems(objects), *canary_problems(objects, thresholds)]
    ]
    argocd = render(ARGOCD, root)
    projects = {obj["metadata"]["name"]: obj for obj in argocd if obj["kind"] == "AppProject"}
    applications = [obj for obj in argocd if obj["kind"] == "Application"]
    for obj in argocd:
        found = schema_problems(obj)
        if obj["kind"] == "Application":
            found += application_problems(obj, projects, overlays)
        problems += [f"{ARGOCD}: {obj['kind']}/{obj['metadata']['name']}: {p}" for p in found]
    if checkov:
        problems += checkov_problems(overlays, checkov)
    if problems:
        raise cli.UserError("; ".join(problems))
    return [
        *(f"{name}: {len(objects)} objects valid" for name, objects in overlays.items()),
        f"{ARGOCD}: {len(applications)} applications sync overlays that render",
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="manifests", description=__doc__)
    parser.add_argument("--checkov", help="the checkov executable (its own environment)")
    args = parser.parse_args(argv)
    print("\n".join(manifests(Path(), args.checkov)))


if __name__ == "__main__":
    cli.run(main)
