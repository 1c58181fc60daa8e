"""Team tracking tier (slow): the platform's MLflow server on a real PostgreSQL, used as CI uses it.

One PostgreSQL (initdb and pg_ctl on a free loopback port in a temporary folder) and one
`mlflow server`, installed from the image's hash-locked requirements and started with the
arguments, environment and files of the rendered Deployment; only the cluster's own settings
(addresses, the object store, secrets) are replaced by local ones. The baked project's make
targets then train, register, promote and move aliases against it with a bearer token, and
everything is read back through the server: the client is never told where artifacts are kept.
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import test_manifests as manifests
import yaml
from conftest import ENV, TEMPLATE, run

pytestmark = pytest.mark.slow

tools, kustomize = manifests.tools, manifests.kustomize  # the manifests tier's fixtures
MLFLOW = TEMPLATE / "argocd/platform/mlflow"
IMAGE = "ghcr.io/example-org/tumor-classifier@sha256:" + "7e" * 32
Object = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Until url answers 200; fail with the log when the process dies or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer:\n{log.read_text()[-5000:]}")
            time.sleep(1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Postgres:
    host: str  # host:port
    password: str


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of its own: the user and database `mlflow`, scram-sha-256 passwords."""
    # On PATH (most systems), or where Debian and Ubuntu keep each major version.
    candidates = [Path(p).resolve().parent for p in [shutil.which("initdb")] if p]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    needed = ("initdb", "pg_ctl", "createdb")
    bin_dir = next((d for d in candidates if all((d / n).is_file() for n in needed)), None)
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (or the OS's package)")
    # initdb refuses to run as root: then the cluster belongs to the `postgres` user, in a folder
    # outside pytest's, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="mlflow-postgres-"))
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    password = secrets.token_hex(16)
    (folder / "password").write_text(password)
    if owner:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "password", "postgres")
    port = free_port()
    data, log = folder / "data", folder / "postgres.log"
    run(
        [
            *owner,
            str(bin_dir / "initdb"),
            *("--pgdata", str(data), "--username", "mlflow", "--auth", "scram-sha-256"),
            *("--pwfile", str(folder / "password"), "--no-sync"),
        ],
        cwd=folder,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder}"
    pg_ctl = [*owner, str(bin_dir / "pg_ctl"), "--pgdata", str(data), "--log", str(log)]
    run([*pg_ctl, "--wait", "--options", options, "start"], cwd=folder)
    try:
        subprocess.run(
            [
                str(bin_dir / "createdb"),
                "--host=127.0.0.1",
                f"--port={port}",
                "-U",
                "mlflow",
                "mlflow",
            ],
            env={**os.environ, "PGPASSWORD": password},
            check=True,
        )
        yield Postgres(f"127.0.0.1:{port}", password)
    finally:
        subprocess.run([*pg_ctl, "--mode", "fast", "stop"], cwd=folder, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def server_env(request: pytest.FixtureRequest) -> Path:
    """A virtual environment of the image's requirements.txt (hashes checked), kept in pytest's
    cache while the file is unchanged."""
    lock = MLFLOW / "image/requirements.txt"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    folder = request.config.cache.mkdir(f"mlflow-server-{digest}")
    if not (folder / ".installed").is_file():
        run(["uv", "venv", "--quiet", "--clear", "--python", sys.executable, str(folder)], TEMPLATE)
        run(
            [
                "uv",
                "pip",
                "sync",
                "--quiet",
                "--require-hashes",
                # Bytecode once: the server and each worker would compile MLflow at start.
                "--compile-bytecode",
                "--python",
                str(folder),
                str(lock),
            ],
            TEMPLATE,
        )
        (folder / ".installed").write_text(digest)
    return folder / "bin"


@dataclass
class Server:
    url: str
    admin: str  # the admin's bearer token, <user>:<password>
    artifacts: Path  # where the server keeps them: the test looks, the clients never do
    metrics: str


def container(objects: list[Object], name: str) -> Object:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (found,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    return found


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: Postgres,
    server_env: Path,
    kustomize: Callable[[Path], list[Object]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The Deployment's two containers, as rendered, on this machine's PostgreSQL and a folder."""
    objects = kustomize(MLFLOW)
    folder = tmp_path_factory.mktemp("mlflow-server")
    configmaps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    (database,) = [
        o for o in objects if o["kind"] == "Service" and "postgres" in o["metadata"]["name"]
    ]
    cluster_database = f"@{database['metadata']['name']}:{database['spec']['ports'][0]['port']}/"
    port, admin_password = free_port(), secrets.token_hex(12)
    # The cluster's own settings, for this machine.
    site = {
        "MLFLOW_ARTIFACTS_DESTINATION": str(folder / "artifacts"),
        "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port}",
    }
    secret_values = {
        ("mlflow-postgres", "password"): postgres.password,
        ("mlflow-server", "admin-password"): admin_password,
        ("mlflow-server", "flask-secret-key"): secrets.token_hex(16),
    }
    (pod,) = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    # Each volume is a folder here; ConfigMap volumes hold their files.
    volumes: dict[str, Path] = {}
    for volume in pod["volumes"]:
        volumes[volume["name"]] = folder / "volumes" / volume["name"]
        volumes[volume["name"]].mkdir(parents=True)
        for key, text in configmaps.get(volume.get("configMap", {}).get("name", ""), {}).items():
            (volumes[volume["name"]] / key).write_text(
                text.replace(cluster_database, f"@{postgres.host}/")
            )

    def localize(value: str, mounts: list[Object]) -> str:
        """A path in a mounted volume, as the path of its folder here; the database, here."""
        flag, equals, path = value.rpartition("=") if value.startswith("--") else ("", "", value)
        for mount in sorted(mounts, key=lambda m: -len(m["mountPath"])):
            if path == mount["mountPath"] or path.startswith(f"{mount['mountPath']}/"):
                path = str(volumes[mount["name"]]) + path.removeprefix(mount["mountPath"])
                break
        return f"{flag}{equals}{path}".replace(cluster_database, f"@{postgres.host}/")

    def environment(spec: Object) -> dict[str, str]:
        env = {
            **ENV,
            "PYTHONPATH": str(MLFLOW / "image"),  # the image's /opt/mlflow
            "PATH": f"{server_env}{os.pathsep}{ENV['PATH']}",
        }
        for source in spec.get("envFrom", []):
            env.update(configmaps[source["configMapRef"]["name"]])
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = secret_values[(ref["name"], ref["key"])]
        env = {k: localize(v, spec.get("volumeMounts", [])) for k, v in env.items()}
        # Already this machine's: a folder under /tmp is not the pod's /tmp volume.
        return env | {k: v for k, v in site.items() if k in env}

    server, sidecar = container(objects, "server"), container(objects, "metrics")
    # Loopback and a free port instead of every address and the container's port.
    here = {"--host": "127.0.0.1", "--port": str(port)}
    args = [localize(arg, server["volumeMounts"]) for arg in server["args"]]
    args = [f"{f}={here[f]}" if (f := a.partition("=")[0]) in here else a for a in args]
    metrics_port = free_port()
    sidecar_args = [*sidecar["command"][:-1], str(metrics_port)]
    log = folder / "server.log"
    with log.open("w") as out:
        processes = [
            subprocess.Popen(
                [str(server_env / "mlflow"), *args],
                cwd=folder,
                env=environment(server),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            subprocess.Popen(
                [str(server_env / sidecar_args[0]), *sidecar_args[1:]],
                cwd=folder,
                env=environment(sidecar),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
    url = f"http://127.0.0.1:{port}"
    try:
        # Four minutes: the server imports MLflow in every worker, on a machine others share.
        wait_for(f"{url}/health", processes[0], log, 240)
        wait_for(f"http://127.0.0.1:{metrics_port}/metrics", processes[1], log, 60)
        yield Server(
            url,
            f"admin:{admin_password}",
            Path(site["MLFLOW_ARTIFACTS_DESTINATION"]),
            f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        for process in processes:
            stop(process)


def api(server: Server, path: str, token: str, body: Object | None = None) -> Object:
    """A call to the server's REST API as the user of the bearer token."""
    request = urllib.request.Request(
        f"{server.url}/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: Object = json.loads(response.read() or b"{}")
        return answer


def user(server: Server, name: str) -> str:
    """A new user of the server, created by the admin as argocd/README.md says; its token."""
    password = secrets.token_hex(12)
    api(server, "users/create", server.admin, {"username": name, "password": password})
    return f"{name}:{password}"


def make(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *args], cwd=project, capture_output=True, text=True, timeout=900, env=ENV | env
    )


def untrain(project: Path) -> None:
    """Remove the pipeline's outputs, their DVC cache entries and the run cache: `make train` then
    runs every stage again (and writes the same files: the pipeline is deterministic)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    cache = project / ".dvc/cache/files/md5"
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path = project / out["path"]
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            (cache / out["md5"][:2] / out["md5"][2:]).unlink(missing_ok=True)
    shutil.rmtree(project / ".dvc/cache/runs", ignore_errors=True)


# Runs in the project's environment with its MLflow client: what the server says, and whether the
# model it hands out predicts exactly as the DVC-tracked file does, on the logged input example.
READ_BACK = """
import json, sys
import joblib, mlflow
from mlflow import MlflowClient
from mlflow.models import Model

name = sys.argv[1]
client = MlflowClient()
production = client.get_model_version_by_alias(name, "production")
run = client.get_run(production.run_id)
path = mlflow.artifacts.download_artifacts(f"models:/{name}@production")
example = Model.load(path).load_input_example(path)
served = mlflow.sklearn.load_model(path).predict_proba(example)
local = joblib.load("models/model.joblib").predict_proba(example)
print(json.dumps({
    "versions": sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'")),
    "aliases": {k: int(v) for k, v in client.get_registered_model(name).aliases.items()},
    "tags": production.tags,
    "version": int(production.version),
    "source": production.source,
    "artifact_uri": run.info.artifact_uri,
    "run_tags": run.data.tags,
    "metrics": run.data.metrics,
    "rows": len(example),
    "same_predictions": bool((served == local).all()),
}))
"""


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_model_trained_registered_and_promoted_on_the_team_server(
    trained: Path, mlflow_server: Server
) -> None:
    project = trained
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_TRACKING_TOKEN": user(mlflow_server, "ci"),
    }
    untrain(project)
    trained_run = make(project, env, "train")
    assert trained_run.returncode == 0, trained_run.stderr
    # Two clients register the same model at once (a release and its re-run, say).
    with ThreadPoolExecutor(2) as pool:
        registered = list(
            pool.map(
                lambda _: make(project, env, "register", "ALIAS=staging", f"IMAGE={IMAGE}"),
                range(2),
            )
        )
    assert [r.returncode for r in registered] == [0, 0], [r.stderr for r in registered]
    (line,) = [line for line in registered[0].stdout.splitlines() if line.endswith(" is @staging")]
    name = line.split(" version ")[0]
    # The release writes the image into staging; the promotion copies it to production, and its
    # merge moves the alias.
    overlays = {path: path.read_bytes() for path in (project / "deploy/overlays").rglob("*.yaml")}
    try:
        for step in (["set-image", "ENV=staging", f"IMAGE={IMAGE}"], ["promote"]):
            run(["make", *step], project)
        promoted = make(project, env, "alias", "ENV=production")
    finally:
        for path, content in overlays.items():
            path.write_bytes(content)
    assert promoted.returncode == 0, promoted.stderr

    read = subprocess.run(
        ["uv", "run", "--locked", "python", "-c", READ_BACK, name],
        cwd=project,
        capture_output=True,
        text=True,
        env=ENV | env,
    )
    assert read.returncode == 0, read.stderr
    seen = json.loads(read.stdout.splitlines()[-1])
    model_md5 = md5(project / "models/model.joblib")
    # One version, both aliases on it, its lineage, and the image that serves it.
    assert seen["versions"] == [seen["version"]]
    assert seen["aliases"] == {"staging": seen["version"], "production": seen["version"]}
    data_md5 = yaml.safe_load((project / "data/raw.csv.dvc").read_text())["outs"][0]["md5"]
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert {k: seen["tags"][k] for k in ("model_md5", "data_md5", "git_revision", "image")} == {
        "model_md5": model_md5,
        "data_md5": data_md5,
        "git_revision": head,
        "image": IMAGE,
    }
    assert float(seen["tags"]["metric.accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)
    # The registered model is the one `make train` logged, with its evaluation, not a copy.
    assert seen["source"].startswith("models:/")
    assert seen["run_tags"]["model_md5"] == model_md5
    assert seen["metrics"]["accuracy"] == metrics["accuracy"]
    # Artifacts went through the server into its folder, and came back the same model.
    assert seen["artifact_uri"].startswith("mlflow-artifacts:/")
    assert list(mlflow_server.artifacts.rglob("MLmodel"))
    assert seen["rows"] > 0
    assert seen["same_predictions"]
    # The metrics sidecar counts the server's requests for Prometheus.
    with urllib.request.urlopen(mlflow_server.metrics, timeout=10) as response:
        scraped = response.read().decode()
    counted = [
        float(line.rpartition(" ")[2])
        for line in scraped.splitlines()
        if line.startswith("mlflow_http_request_total{") and 'status="200"' in line
    ]
    assert sum(counted) > 10


def test_the_server_admits_only_its_users(trained: Path, mlflow_server: Server) -> None:
    token = user(mlflow_server, "reader")
    experiments = api(mlflow_server, "experiments/search", token, {"max_results": 10})
    assert "experiments" in experiments
    # Browsers log in with the basic scheme, as the same users.
    basic = base64.b64encode(token.encode()).decode()
    request = urllib.request.Request(
        f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": f"Basic {basic}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    for wrong in (f"{token}x", "reader", ""):
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(mlflow_server, "experiments/search", wrong, {"max_results": 1})
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"].startswith("Basic")
    # A client with a wrong token stops at once, in one line, and registers nothing.
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_TRACKING_TOKEN": f"{token}x"}
    result = make(trained, env, "register", "ALIAS=canary")
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("register:")]
    assert "error code 401" in line
    assert "set MLFLOW_TRACKING_TOKEN to <user>:<password>" in line
    assert "Traceback" not in result.stderr


def test_make_tracking_shows_this_folders_runs(trained: Path, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "tracking.log"
    with log.open("w") as out:
        ui = subprocess.Popen(
            ["make", "tracking", f"TRACKING_PORT={port}"],
            cwd=trained,
            env={k: v for k, v in ENV.items() if k != "MLFLOW_TRACKING_URI"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    experiment = next((trained / "src").iterdir()).name  # the package names the experiment
    try:
        wait_for(f"http://127.0.0.1:{port}/health", ui, log, 240)
        with urllib.request.urlopen(
            f"{url}/experiments/get-by-name?experiment_name={experiment}", timeout=30
        ) as response:
            experiment_id = json.loads(response.read())["experiment"]["experiment_id"]
        request = urllib.request.Request(
            f"{url}/runs/search",
            data=json.dumps({"experiment_ids": [experiment_id]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            runs = json.loads(response.read())["runs"]
    finally:
        stop(ui)
    model_md5 = md5(trained / "models/model.joblib")
    assert model_md5 in {tag["value"] for r in runs for tag in r["data"]["tags"]}
    # Pointed at a team server, it says where to look instead of showing a local store.
    pointed = make(trained, {"MLFLOW_TRACKING_URI": "https://mlflow.example.org"}, "tracking")
    assert pointed.returncode == 0
    assert pointed.stdout == "MLFLOW_TRACKING_URI is set: open https://mlflow.example.org\n"
