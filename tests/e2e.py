"""End to end, where Docker runs (GitHub's runners): Argo CD in kind deploys a baked project.

kind, with the local registry of kind's guide; Prometheus Operator's CRDs; Argo CD from the
template's argocd/install. A git daemon inside the cluster serves the baked repository. Argo CD's
staging Application syncs the image of deploy/image/Dockerfile, pushed by digest, into a namespace
that enforces the restricted Pod Security level, and one prediction answers through a port-forward.
Then `make set-image` of a new digest, committed and pushed, rolls the Deployment to it. `make e2e`
runs this.

    python tests/e2e.py --kind build/tools/kind [--out build/e2e] [--keep]
"""

import argparse
import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from conftest import GIT, TEMPLATE, bake_into, post

CLUSTER = "mlops-e2e"
CONTEXT = f"kind-{CLUSTER}"
KUBECTL = str(Path(sys.executable).parent / "kubectl")  # the template's locked kubectl
# kind's local registry (https://kind.sigs.k8s.io/docs/user/local-registry/), pinned by digest.
REGISTRY, REGISTRY_PORT = "kind-registry", 5001
REGISTRY_IMAGE = (
    "registry:3@sha256:1be55279f18a2fe1a74edf2664cac61c1bea305b7b4642dab412e7affdcb3e33"
)
KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
"""
# The CRDs of the kinds the overlays render besides Kubernetes' own, at the version whose schemas
# the manifests tier validates against, checked by their SHA-256.
PROMETHEUS_OPERATOR = (
    "https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/v0.90.1"
    "/example/prometheus-operator-crd/monitoring.coreos.com_{}.yaml"
)
CRDS = {
    "servicemonitors": "a12e93b05ad913a0ba0b42baebb2f4b141b247d528a307e91842b32b3d5d00ea",
    "prometheusrules": "2024f24fd0e304f1f0c21ef827315119ad22b140843df6e85a889db17f55e5fa",
}
# Argo CD's own image has git: its daemon serves the repository, pushes included, over git://.
GIT_SERVER = """\
apiVersion: v1
kind: Namespace
metadata:
  name: git
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: git
  namespace: git
spec:
  selector:
    matchLabels: {{app: git}}
  template:
    metadata:
      labels: {{app: git}}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 999
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: git
          image: {image}
          command: [sh, -c]
          args:
            - git init --quiet --bare --initial-branch=main /srv/git/{repository}
              && exec git daemon --reuseaddr --export-all --enable=receive-pack
              --base-path=/srv/git /srv/git
          ports:
            - containerPort: 9418
          readinessProbe:
            tcpSocket: {{port: 9418}}
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {{drop: [ALL]}}
          volumeMounts:
            - {{name: repositories, mountPath: /srv/git}}
      volumes:
        - {{name: repositories, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: git
  namespace: git
spec:
  selector: {{app: git}}
  ports:
    - port: 9418
"""

Object = dict[str, Any]


def sh(*command: str, cwd: Path | None = None, stdin: str | None = None) -> str:
    """Run a command, echoed for the job's log; its output, or exit with it when it fails."""
    print(f"+ {shlex.join(command)}", flush=True)
    result = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command[0]} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def kubectl(*args: str, stdin: str | None = None) -> str:
    return sh(KUBECTL, "--context", CONTEXT, *args, stdin=stdin)


def wait(what: str, done: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(5)
    print(f"  {what}: done", flush=True)


@contextmanager
def forward(namespace: str, target: str, port: int) -> Iterator[int]:
    """kubectl port-forward to target's port; the local port it chose."""
    process = subprocess.Popen(
        [KUBECTL, "--context", CONTEXT, "-n", namespace, "port-forward", target, f":{port}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        match = re.search(r"127\.0\.0\.1:(\d+)", process.stdout.readline())
        if match is None:
            sys.exit(f"port-forward to {namespace}/{target} failed")
        yield int(match[1])
    finally:
        process.terminate()
        process.wait()


def cluster(kind: str) -> None:
    """A kind cluster whose nodes pull localhost:5001/... from the registry container."""
    sh("docker", "run", "--detach", "--restart=always", "--network", "bridge", "--name", REGISTRY,
       "--publish", f"127.0.0.1:{REGISTRY_PORT}:5000", REGISTRY_IMAGE)  # fmt: skip
    sh(
        kind,
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        "-",
        "--wait",
        "3m",
        stdin=KIND_CONFIG,
    )
    hosts = f"/etc/containerd/certs.d/localhost:{REGISTRY_PORT}"
    for node in sh(kind, "get", "nodes", "--name", CLUSTER).split():
        sh("docker", "exec", node, "mkdir", "-p", hosts)
        sh("docker", "exec", "-i", node, "cp", "/dev/stdin", f"{hosts}/hosts.toml",
           stdin=f'[host."http://{REGISTRY}:5000"]\n')  # fmt: skip
    sh("docker", "network", "connect", "kind", REGISTRY)


def platform() -> None:
    """Prometheus Operator's CRDs and Argo CD, as the template's README installs them."""
    for name, sha256 in CRDS.items():
        url = PROMETHEUS_OPERATOR.format(name)
        with urllib.request.urlopen(url, timeout=60) as response:
            crd = response.read()
        if hashlib.sha256(crd).hexdigest() != sha256:
            sys.exit(f"{url}: not the file whose SHA-256 is {sha256}")
        kubectl("apply", "--server-side", "-f", "-", stdin=crd.decode())
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(TEMPLATE / "argocd/install"))
    for workload in ("deployment/argocd-redis", "deployment/argocd-repo-server",
                     "statefulset/argocd-application-controller"):  # fmt: skip
        kubectl("-n", "argocd", "rollout", "status", workload, "--timeout=10m")
    kubectl("apply", "--server-side", "-k", str(TEMPLATE / "argocd/rollouts"))
    kubectl("-n", "argo-rollouts", "rollout", "status", "deployment/argo-rollouts", "--timeout=10m")


def promoted(namespace: str, name: str, check: Callable[[], bool]) -> Callable[[], bool]:
    """check, after skipping the canary's steps: kind has no Prometheus to judge them, so the test
    promotes the release as `kubectl argo rollouts promote --full` does."""

    def done() -> bool:
        patch = '{"status": {"promoteFull": true}}'
        kubectl("-n", namespace, "patch", "rollout", name, "--subresource=status", "--type=merge",
                "-p", patch)  # fmt: skip
        return check()

    return done


def applications(project: Path, url: str) -> list[Object]:
    """The project's AppProject and staging Application, reading the repository at url."""
    objects = yaml.safe_load_all(kubectl("kustomize", str(project / "argocd")))
    chosen = [
        obj
        for obj in objects
        if obj["kind"] == "AppProject" or obj["spec"]["source"]["path"].endswith("/staging")
    ]
    for obj in chosen:
        if obj["kind"] == "AppProject":
            obj["spec"]["sourceRepos"] = [url]
        else:
            obj["spec"]["source"]["repoURL"] = url
    return chosen


def image(project: Path, revision: str) -> str:
    """Build deploy/image/Dockerfile from the Bento, push it; the image by its registry digest."""
    tag = f"localhost:{REGISTRY_PORT}/{project.name}:{revision}"
    label = f"org.opencontainers.image.revision={revision}"
    sh("docker", "build", "--file", "deploy/image/Dockerfile", "--tag", tag, "--label", label,
       "build/bento", cwd=project)  # fmt: skip
    sh("docker", "push", tag)
    return sh("docker", "inspect", "--format", "{{index .RepoDigests 0}}", tag).strip()


def release(project: Path, digest: str, remote: str) -> str:
    """What the release workflow does: `make set-image`, commit, push; the new revision."""
    sh("make", "set-image", "ENV=staging", f"IMAGE={digest}", cwd=project)
    sh(*GIT, "commit", "--quiet", "--all", "--message", f"deploy(staging): {digest}", cwd=project)
    sh(*GIT, "push", "--quiet", remote, "HEAD:main", cwd=project)
    return sh("git", "rev-parse", "HEAD", cwd=project).strip()


def synced(app: str, namespace: str, revision: str, digest: str) -> Callable[[], bool]:
    """Argo CD synced revision, and every pod of the workload runs digest and is Ready."""

    def ready(pod: Object) -> bool:
        conditions = pod["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def check() -> bool:
        application = json.loads(kubectl("-n", "argocd", "get", "application", app, "-o", "json"))
        sync = application.get("status", {}).get("sync", {})
        pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json"))["items"]
        images = sorted({pod["spec"]["containers"][0]["image"] for pod in pods})
        print(
            f"  {sync.get('status')} at {sync.get('revision', '')[:12]}; images {images}",
            flush=True,
        )
        return (
            (sync.get("status"), sync.get("revision")) == ("Synced", revision)
            and images == [digest]
            and all(ready(pod) and "deletionTimestamp" not in pod["metadata"] for pod in pods)
        )

    return check


def restricted(namespace: str) -> None:
    labels = json.loads(kubectl("get", "namespace", namespace, "-o", "json"))["metadata"]["labels"]
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        sys.exit(f"namespace {namespace} does not enforce the restricted Pod Security level")


def predict(project: Path, namespace: str) -> None:
    body = (project / "build/example.json").read_bytes()
    with forward(namespace, f"service/{project.name}", 80) as port:
        status, answer = post(f"http://127.0.0.1:{port}", body)
    print(f"  prediction: {status} {answer}", flush=True)
    if status != 200:
        sys.exit(f"the service answered {status}: {answer}")


def git_server(repository: str) -> None:
    image = kubectl("-n", "argocd", "get", "deployment", "argocd-repo-server",
                    "-o", "jsonpath={.spec.template.spec.containers[0].image}")  # fmt: skip
    kubectl("apply", "-f", "-", stdin=GIT_SERVER.format(image=image, repository=repository))
    kubectl("-n", "git", "rollout", "status", "deployment/git", "--timeout=5m")


def end_to_end(kind: str, project: Path) -> None:
    app = namespace = f"{project.name}-staging"
    sh("make", "setup", "train", "bento", cwd=project)
    cluster(kind)
    first = image(project, "first")
    platform()
    git_server(f"{project.name}.git")
    with forward("git", "service/git", 9418) as port:
        remote = f"git://127.0.0.1:{port}/{project.name}.git"
        revision = release(project, first, remote)
        url = f"git://git.git.svc.cluster.local/{project.name}.git"
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(applications(project, url)))
        wait(f"{app} synced to {first}", synced(app, namespace, revision, first))
        restricted(namespace)
        predict(project, namespace)
        second = image(project, "second")
        revision = release(project, second, remote)
    # Argo CD polls every three minutes; a webhook would say "now", as this annotation does.
    refresh = "argocd.argoproj.io/refresh=normal"
    kubectl("-n", "argocd", "annotate", "application", app, refresh, "--overwrite")
    rolled = synced(app, namespace, revision, second)
    wait(f"{app} rolled to {second}", promoted(namespace, project.name, rolled))
    predict(project, namespace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, help="the kind binary (the Makefile pins it)")
    parser.add_argument("--out", type=Path, default=Path("build/e2e"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    sh("rm", "-rf", str(args.out))
    project = bake_into(args.out.resolve())
    try:
        end_to_end(args.kind, project)
    except BaseException:
        for command in (("get", "applications", "-A", "-o", "yaml"), ("get", "pods", "-A"),
                        ("get", "events", "-A", "--sort-by=.lastTimestamp")):  # fmt: skip
            subprocess.run([KUBECTL, "--context", CONTEXT, *command], check=False)
        raise
    finally:
        if not args.keep:
            subprocess.run([args.kind, "delete", "cluster", "--name", CLUSTER], check=False)
            subprocess.run(["docker", "rm", "--force", REGISTRY], check=False)


if __name__ == "__main__":
    main()
