"""Serving benchmark: one trained model served three ways, under the same load, interleaved.

(a) the generated BentoML service (`make serve`), (b) `mlflow models serve` of the same registered
model, (c) the floor: the service's own parse-predict-serialise work called in-process, no HTTP.
wrk drives (a) and (b) with the same connections and duration; the rounds alternate so that a
noisy neighbour hurts every contender alike. Prints a markdown table, ratios against MLflow.

    python tests/bench_serving.py build/bench/tumor-classifier [--rounds 3] [--seconds 10]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_pipeline import ENV, fail

# wrk reports through its `done` hook: the figures as one JSON line.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "r"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""

# The floor, run in the project's environment: what one request costs without a server.
FLOOR = """
import json, sys, time
from pathlib import Path
import bentoml
from tumor_classifier import NAME, contract
from tumor_classifier.serving.predict import Predictor

folder = Path(bentoml.models.get(f"{NAME}:latest").path)
features = contract.load_text((folder / "contract.json").read_text())
predictor = Predictor(features, folder / "model.joblib", folder / "model.onnx")
body = Path(sys.argv[1]).read_bytes()

def handle(body: bytes) -> bytes:
    records = json.loads(body)["records"]
    proba = predictor.proba({f.name: [r.get(f.name) for r in records] for f in features})
    labels = predictor.labels(proba)
    return json.dumps({"predictions": [
        {"label": label, "probabilities": dict(zip(predictor.classes, row))}
        for label, row in zip(labels, proba.tolist())
    ]}).encode()

times, end = [], time.perf_counter() + float(sys.argv[2])
while (start := time.perf_counter()) < end:
    handle(body)
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({
    "requests": len(times), "seconds": sum(times), "errors": 0,
    "p50_ms": times[len(times) // 2] * 1000, "p99_ms": times[int(len(times) * 0.99)] * 1000,
}))
"""


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"{url} exited before it was ready; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    fail(f"{url} was not ready after {timeout:.0f} s; see {log}")


@contextmanager
def server(command: list[str], cwd: Path, ready: str, log: Path) -> Iterator[None]:
    """A server in its own process group, stopped with all its workers afterwards."""
    # The model registry is the project's SQLite file, wherever the server runs from.
    env = ENV | {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(ready, process, log)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wrk(url: str, body: Path, script: Path, seconds: int, connections: int) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", "--threads", "2", "--connections", str(connections), "--duration", f"{seconds}s",
         "--timeout", "5s", "--script", str(script), url],
        env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def floor(project: Path, body: Path, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        ["uv", "run", "--locked", "python", "-c", FLOOR, str(body), str(seconds)],
        cwd=project, env=ENV | {"BENTOML_HOME": str(project / "build/bentoml")},  # make bento's store
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def table(rounds: dict[str, list[dict[str, float]]], connections: int) -> str:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name])

    rps = {name: median(name, "requests") / median(name, "seconds") for name in rounds}
    lines = [
        f"| served as ({connections} connections) | requests/s | p50 ms | p99 ms | errors "
        "| requests/s ÷ MLflow's |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    mlflow = rps["mlflow models serve"]
    for name in rounds:
        errors = sum(int(r["errors"]) for r in rounds[name])
        lines.append(
            f"| {name} | {rps[name]:.0f} | {median(name, 'p50_ms'):.1f} "
            f"| {median(name, 'p99_ms'):.1f} | {errors} | {rps[name] / mlflow:.1f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    project: Path = args.project.resolve()
    if shutil.which("wrk") is None:
        fail("the serving benchmark needs wrk on PATH: apt-get install wrk, or brew install wrk")
    body = project / "build/example.json"
    if not body.is_file():
        fail(f"{body} is missing: run make train register bento in {project} first")
    records = json.loads(body.read_text())["records"]

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "wrk.lua").write_text(WRK_SCRIPT)
        (work / "mlflow.json").write_text(json.dumps({"dataframe_records": records}))
        stack.enter_context(
            server(["make", "serve", "PORT=3201"], project, "http://127.0.0.1:3201/readyz",
                   project / "build/bench-bentoml.log")
        )  # fmt: skip
        stack.enter_context(
            server(["uv", "run", "--locked", "mlflow", "models", "serve", "--env-manager", "local",
                    "--model-uri", "models:/tumor_classifier@staging",
                    "--host", "127.0.0.1", "--port", "3202"],
                   project, "http://127.0.0.1:3202/ping", project / "build/bench-mlflow.log")
        )  # fmt: skip
        rounds: dict[str, list[dict[str, float]]] = {
            "generated service (BentoML)": [],
            "mlflow models serve": [],
            "floor: in-process, no HTTP": [],
        }
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", file=sys.stderr)
            for name, url, payload in [
                ("generated service (BentoML)", "http://127.0.0.1:3201/predict", body),
                ("mlflow models serve", "http://127.0.0.1:3202/invocations", work / "mlflow.json"),
            ]:
                wrk(url, payload, work / "wrk.lua", 2, args.connections)  # warm up
                rounds[name].append(
                    wrk(url, payload, work / "wrk.lua", args.seconds, args.connections)
                )
            rounds["floor: in-process, no HTTP"].append(floor(project, body, args.seconds))
    report = table(rounds, args.connections)
    (project.parent / "serving.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
