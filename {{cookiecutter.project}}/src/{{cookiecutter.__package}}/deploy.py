"""Kubernetes manifests: write a release's image into an overlay; render and check every overlay."""

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from . import cli, params
from .params import Params

OVERLAYS = Path("deploy/overlays")
ARGOCD = Path("argocd")
SLO = Path("deploy/base/slo.yaml")

# The oldest Kubernetes minor the manifests must run on: its schemas refuse a field that a cluster
# of that version would refuse.
KUBERNETES_VERSION = "1.33"
# kubernetes-validate knows the core kinds only; the template's tests validate these custom
# resources against the CRDs of Prometheus Operator and Argo CD.
CRD_GROUPS = {"monitoring.coreos.com", "argoproj.io"}

COMPONENT = r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
DIGEST = r"sha256:[0-9a-f]{64}"
IMAGE_BY_DIGEST = re.compile(rf"{COMPONENT}(?::[0-9]+)?(?:/{COMPONENT})*@{DIGEST}")
IMAGE_LINE = re.compile(r"^(?P<key>[ \t]*(?:-[ \t]+)?image:[ \t]*)(?P<value>[^\s#]+)", re.MULTILINE)

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
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
NAMESPACE_MATCHER = re.compile(r'namespace="([^"]*)"')
THRESHOLD = re.compile(r" > (\S+)\s*$")

SLO_HEADER = """\
# Written by `make manifests` from params.yaml (serve.slo, drift): edit params.yaml instead.
# kustomize copies these values into the alert rules and leaves this object out of what it renders.
apiVersion: v1
kind: ConfigMap
metadata:
  name: slo
  annotations:
    config.kubernetes.io/local-config: "true"
data:
"""

Object = dict[str, Any]


def set_image(overlays: Path, env: str, image: str) -> list[Path]:
    """Write image into the image lines of one overlay, and nothing else; the files it changed."""
    if not IMAGE_BY_DIGEST.fullmatch(image):
        raise cli.UserError(f"{image}: not an image by digest, <repository>@sha256:<64 hex digits>")
    known = sorted(path.parent.name for path in overlays.glob("*/kustomization.yaml"))
    if env not in known:
        raise cli.UserError(f"{env}: no such overlay in {overlays}; one of {', '.join(known)}")
    changed, found = [], 0
    for path in sorted((overlays / env).glob("*.yaml")):
        # Bytes in and out: line endings and everything around the image stay as they were.
        text = path.read_bytes().decode()
        new, count = IMAGE_LINE.subn(lambda line: line["key"] + image, text)
        found += count
        if new != text:
            path.write_bytes(new.encode())
            changed.append(path)
    if not found:
        raise cli.UserError(f"{overlays / env}: no image line to change")
    return changed


def image_of(overlays: Path, env: str) -> str:
    """The image an overlay deploys (what promotion copies to the next environment)."""
    images = {
        match["value"]
        for path in sorted((overlays / env).glob("*.yaml"))
        for match in IMAGE_LINE.finditer(path.read_text())
    }
    if len(images) != 1:
        raise cli.UserError(f"{overlays / env}: expected one image, found {len(images)}")
    return images.pop()


def slo_manifest(p: Params) -> str:
    """slo.yaml as params.yaml implies it; Prometheus measures durations in seconds."""
    values = {
        "error_rate": p.serve.slo.error_rate,
        "p99_seconds": p.serve.slo.p99_ms / 1000,
        "psi_alert": p.drift.psi_alert,
    }
    return SLO_HEADER + "".join(f'  {key}: "{value:g}"\n' for key, value in values.items())


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


def pod_problems(pod: Object) -> list[str]:
    """What the restricted Pod Security Standard, and a service that runs well, require of a pod."""
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false")
    problems += [f"{key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for volume in pod.get("volumes", []):
        problems += [
            f"volume {volume['name']} is a {kind}"
            for kind in set(volume) - {"name"} - RESTRICTED_VOLUMES
        ]
    pod_context = pod.get("securityContext", {})
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name = f"container {container['name']}"
        context = container.get("securityContext", {})

        def setting(key: str, context: Object = context) -> Any:
            return context.get(key, pod_context.get(key))  # a container's value wins

        if setting("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        for key in ("runAsUser", "runAsGroup"):
            value = setting(key)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name}: {key} is not a numeric non-root ID")
        if (setting("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        problems += [
            f"{name}: adds capability {added}"
            for added in set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}
        ]
        resources = container.get("resources", {})
        problems += [
            f"{name}: no {resource} {kind}"
            for kind in ("requests", "limits")
            for resource in ("cpu", "memory")
            if resource not in resources.get(kind, {})
        ]
        if container in pod["containers"]:
            problems += [f"{name}: no {probe}" for probe in PROBES if probe not in container]
        if not IMAGE_BY_DIGEST.fullmatch(container.get("image", "")):
            problems.append(f"{name}: image {container.get('image')} is not pinned by digest")
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
    for obj in objects:
        kind, meta, spec = obj["kind"], obj["metadata"], obj.get("spec", {})
        found = schema_problems(obj)
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


def manifests(root: Path) -> list[str]:
    """Check every overlay and the Argo CD objects of the project at root; what passed."""
    expected = slo_manifest(params.load(root / "params.yaml"))
    slo = root / SLO
    if not slo.is_file() or slo.read_text() != expected:
        # Rewritten and failed, as a formatter does: CI catches a stale file, a laptop fixes it.
        slo.write_text(expected)
        raise cli.UserError(
            f"{SLO} did not match params.yaml and is rewritten: review and commit it"
        )
    overlays = {
        path.parent.relative_to(root).as_posix(): render(path.parent.relative_to(root), root)
        for path in sorted((root / OVERLAYS).glob("*/kustomization.yaml"))
    }
    if not overlays:
        raise cli.UserError(f"{OVERLAYS}: no overlay")
    problems = [
        f"{name}: {problem}"
        for name, objects in overlays.items()
        for problem in overlay_problems(objects)
    ]
    argocd = render(ARGOCD, root)
    projects = {obj["metadata"]["name"]: obj for obj in argocd if obj["kind"] == "AppProject"}
    applications = [obj for obj in argocd if obj["kind"] == "Application"]
    for obj in argocd:
        found = schema_problems(obj)
        if obj["kind"] == "Application":
            found += application_problems(obj, projects, overlays)
        problems += [f"{ARGOCD}: {obj['kind']}/{obj['metadata']['name']}: {p}" for p in found]
    if problems:
        raise cli.UserError("; ".join(problems))
    return [
        *(f"{name}: {len(objects)} objects valid" for name, objects in overlays.items()),
        f"{ARGOCD}: {len(applications)} applications sync overlays that render",
    ]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="deploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    set_image_parser = commands.add_parser("set-image", help="write IMAGE into deploy/overlays/ENV")
    set_image_parser.add_argument("env", metavar="ENV")
    set_image_parser.add_argument("image", metavar="IMAGE", help="<repository>@sha256:<digest>")
    promote_parser = commands.add_parser("promote", help="copy the image of one overlay to another")
    promote_parser.add_argument("source", metavar="FROM")
    promote_parser.add_argument("target", metavar="TO")
    image_parser = commands.add_parser("image", help="print the image deploy/overlays/ENV deploys")
    image_parser.add_argument("env", metavar="ENV")
    commands.add_parser("manifests", help="render every overlay and check it offline")
    args = parser.parse_args(argv)
    if args.command == "image":
        print(image_of(OVERLAYS, args.env))
    elif args.command in ("set-image", "promote"):
        env = args.env if args.command == "set-image" else args.target
        image = args.image if args.command == "set-image" else image_of(OVERLAYS, args.source)
        changed = set_image(OVERLAYS, env, image)
        print(f"{OVERLAYS / env}: {image}{'' if changed else ' (already)'}")
    else:
        print("\n".join(manifests(Path())))


if __name__ == "__main__":
    cli.run(main)
