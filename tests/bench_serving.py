"""Serving benchmark: one trained model served four ways, under the same load, interleaved.

(a) the generated BentoML service (`make serve`), (b) `mlflow models serve` of the same registered
model, (c) the ceiling: a bare ASGI app (uvicorn, 2 workers, uvloop + httptools) answering the same
request with the same response shape from the same ONNX model (ONNX Runtime, one thread), with
nothing else on its path, (d) the floor: that parse-predict-serialise work called in-process, no
HTTP. wrk drives (a) to (c) with the same connections and duration; the rounds alternate so that a
noisy neighbour hurts every contender alike. Prints a markdown table, ratios against the ceiling
and against MLflow; then each service worker's memory (RSS) after a load of --soak seconds, sampled
along the way, so that growth shows (--soak 300 for the five-minute soak); with --profile, where a
service worker's CPU goes (py-spy, run by uvx).

wrk comes from the system's packages (apt-get install wrk, brew install wrk).

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
from typing import Any

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

# The least a server of this model must do for a request, run in the project's environment: parse
# the JSON, predict with ONNX Runtime (one thread, as the service's Predictor sets it), answer the
# service's response shape. The model folder is the BentoML model the service serves.
HANDLE = """
import json, os
from pathlib import Path
from tumor_classifier import contract
from tumor_classifier.serving.predict import Predictor

folder = Path(os.environ["BENCH_MODEL"])
features = contract.load_text((folder / "contract.json").read_text())
predictor = Predictor(features, folder / "model.joblib", folder / "model.onnx")
version = json.loads((folder / "serve.json").read_text())["model_version"]

def handle(body: bytes) -> bytes:
    records = json.loads(body)["records"]
    proba = predictor.proba({f.name: [r.get(f.name) for r in records] for f in features})
    labels = predictor.labels(proba)
    return json.dumps({"model_version": version, "predictions": [
        {"label": label, "probabilities": dict(zip(predictor.classes, row)), "out_of_range": []}
        for label, row in zip(labels, proba.tolist())
    ]}).encode()
"""

# The ceiling: HANDLE behind a bare ASGI app, served by uvicorn like the service's workers are.
CEILING = (
    HANDLE
    + """
HEADERS = [(b"content-type", b"application/json")]

async def app(scope, receive, send):
    if scope["path"] == "/readyz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    answer = handle(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": answer})
"""
)

# The floor: HANDLE called in a loop, timed.
FLOOR = (
    HANDLE
    + """
import sys, time
body = Path(sys.argv[1]).read_bytes()
times, end, cpu = [], time.perf_counter() + float(sys.argv[2]), time.process_time()
while (start := time.perf_counter()) < end:
    handle(body)
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({
    "requests": len(times), "seconds": sum(times), "errors": 0, "cpu": time.process_time() - cpu,
    "p50_ms": times[len(times) // 2] * 1000, "p99_ms": times[int(len(times) * 0.99)] * 1000,
}))
"""
)


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
def server(
    command: list[str], cwd: Path, ready: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    """A server in its own process group, stopped with its workers afterwards; yields its pid."""
    # The model registry is the project's SQLite file, wherever the server runs from.
    env = ENV | {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"} | (env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(ready, process, log)
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def processes(server: int) -> dict[int, list[str]]:
    """The server and every process under it, each with the fields of its /proc/<pid>/stat after
    the command name (Linux). BentoML starts its workers in sessions of their own: they are found
    by parent."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue  # it ended meanwhile
    found = {}
    for pid in stats:
        ancestor = pid
        while ancestor not in (server, 0, 1) and ancestor in stats:
            ancestor = int(stats[ancestor][1])
        if ancestor == server:
            found[pid] = stats[pid]
    return found


def cpu_seconds(server: int) -> float:
    """CPU seconds (user + system) the server and its processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f[11]) + int(f[12]) for f in processes(server).values()) / ticks


def workers(server: int, marker: str) -> dict[int, int]:
    """RSS in KiB of each process under the server whose command line holds marker."""
    found = {}
    for pid in processes(server):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if marker in command:
            rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            found[pid] = int(rss.split()[1])
    return found


def wrk(
    url: str, body: Path, script: Path, seconds: int, connections: int, wait: bool = True
) -> Any:
    command = ["wrk", "--threads", "2", "--connections", str(connections), "--duration",
               f"{seconds}s", "--timeout", "5s", "--script", str(script), url]  # fmt: skip
    env = {**os.environ, "BENCH_BODY": str(body)}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def floor(project: Path, body: Path, seconds: int, model: Path) -> dict[str, float]:
    result = subprocess.run(
        ["uv", "run", "--locked", "python", "-c", FLOOR, str(body), str(seconds)],
        cwd=project, env=ENV | {"BENCH_MODEL": str(model)}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def model_folder(project: Path) -> Path:
    """The newest model `make bento` stored in the project's BentoML store (its build/bentoml)."""
    models = project / "build/bentoml/models"
    name = next(path for path in models.iterdir() if path.is_dir())
    return name / (name / "latest").read_text().strip()


def table(rounds: dict[str, list[dict[str, float]]], connections: int) -> str:
    """Medians of the rounds. CPU per request is the servers' own CPU time (all their processes)
    over the requests they answered: the figure a shared machine distorts least."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[name])

    rps = {name: median(name, "requests") / median(name, "seconds") for name in rounds}
    cpu = {
        name: statistics.median(r["cpu"] / r["requests"] for r in rounds[name]) * 1000
        for name in rounds
    }
    lines = [
        f"| served as ({connections} connections) | requests/s | p50 ms | p99 ms | errors "
        "| CPU ms per request | requests/s ÷ ceiling | CPU per request × ceiling | × MLflow |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in rounds:
        errors = sum(int(r["errors"]) for r in rounds[name])
        lines.append(
            f"| {name} | {rps[name]:.0f} | {median(name, 'p50_ms'):.1f} "
            f"| {median(name, 'p99_ms'):.1f} | {errors} | {cpu[name]:.2f} "
            f"| {rps[name] / rps[CEILING_NAME]:.2f} | {cpu[name] / cpu[CEILING_NAME]:.2f} "
            f"| {rps[name] / rps[MLFLOW_NAME]:.1f} |"
        )
    return "\n".join(lines)


def soak(
    servers: dict[str, tuple[int, str, str]], body: Path, script: Path, seconds: int, every: int
) -> str:
    """Each contender under load for `seconds`, one at a time: its workers' RSS every `every` s."""
    lines = [
        f"| workers of | RSS at {min(60, seconds)} s (MiB per worker) | RSS at {seconds} s "
        f"| growth after {min(60, seconds)} s "
        "| requests/s | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (pid, marker, url) in servers.items():
        print(f"soak: {name}, {seconds} s", file=sys.stderr)
        load, samples, start = wrk(url, body, script, seconds, 16, wait=False), {}, time.monotonic()
        while load.poll() is None:
            time.sleep(every - (time.monotonic() - start) % every)
            samples[round(time.monotonic() - start)] = workers(pid, marker)
        figures = json.loads(load.communicate()[0].strip().splitlines()[-1])
        taken = [(at, rss) for at, rss in samples.items() if rss]
        if not taken:
            fail(f"no worker of {name} found (their command line holds {marker!r})")
        first = next(rss for at, rss in taken if at >= min(60, seconds))
        last = taken[-1][1]

        def mib(rss: dict[int, int]) -> str:
            return " / ".join(f"{kib / 1024:.0f}" for _, kib in sorted(rss.items()))

        growth = max(last[w] - first.get(w, last[w]) for w in last) / 1024
        lines.append(
            f"| {name} ({len(last)}) | {mib(first)} | {mib(last)} | {growth:+.1f} MiB "
            f"| {figures['requests'] / figures['seconds']:.0f} | {figures['errors']} |"
        )
    return "\n".join(lines)


def profile(server: int, marker: str, url: str, body: Path, script: Path, seconds: int) -> str:
    """Where one service worker's time goes under load: py-spy's samples of it, by library (the
    frame running) and by function (with what it calls)."""
    pid = max(workers(server, marker))
    spy = ["uvx", "py-spy==0.4.3"]
    subprocess.run([*spy, "--version"], check=True, capture_output=True)  # fetched before the load
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        load = wrk(url, body, script, seconds + 10, 16, wait=False)
        time.sleep(2)
        record = subprocess.run(
            [*spy, "record", "--pid", str(pid), "--duration", str(seconds),
             "--rate", "250", "--full-filenames", "--format", "raw", "--output", str(out)],
            capture_output=True, text=True,
        )  # fmt: skip
        load.communicate()
        if record.returncode != 0:  # e.g. not allowed to attach: the rest of the report stands
            reason = (record.stderr.strip().splitlines() or ["no output"])[-1]
            return f"profile skipped: py-spy could not sample worker {pid}: {reason}"
        stacks = [line.rsplit(" ", 1) for line in out.read_text().splitlines() if line]
    total = sum(int(n) for _, n in stacks)
    inclusive: dict[tuple[str, str], int] = {}
    own: dict[tuple[str, str], int] = {}
    libraries: dict[str, int] = {}
    for stack, n in stacks:
        frames = [where(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        function, library = frames[-1]
        if library == "python" and function in LOOP:  # no Python frame above: uvloop, in C
            library = "event loop (uvloop, in C: sockets, timers; on a shared machine, waiting)"
        libraries[library] = libraries.get(library, 0) + int(n)
    lines = [
        f"{total} samples of service worker {pid} under load, by the library running:",
        "",
        "| library | share of samples |",
        "|---|---:|",
        *(f"| {name} | {n / total:.0%} |" for name, n in sorted(libraries.items(), key=by_share)),
        "",
        "| function (with what it calls) | share of samples |",
        "|---|---:|",
    ]
    ranked = sorted(inclusive, key=lambda f: (-inclusive[f], f))
    for function, library in [f for f in ranked if inclusive[f] < total * 0.98][:30]:
        share = inclusive[(function, library)] / total
        lines.append(f"| {function} ({library}) | {share:.0%} |")
    lines += ["", "| function (itself) | share of samples |", "|---|---:|"]
    for function, library in sorted(own, key=lambda f: (-own[f], f))[:20]:
        lines.append(f"| {function} ({library}) | {own[(function, library)] / total:.0%} |")
    return "\n".join(lines)


def by_share(item: tuple[str, int]) -> int:
    return -item[1]


# asyncio's frames that call into the event loop itself.
LOOP = ("Runner.run", "run", "run_until_complete", "run_forever")


def where(frame: str) -> tuple[str, str]:
    """(function, library) of py-spy's `function (/path/to/module.py:12)`: the package under
    site-packages, python for the standard library, the service for the Bento's own code."""
    function, _, place = frame.partition(" (")
    parts = Path(place.rstrip(")").rsplit(":", 1)[0]).parts
    if "site-packages" in parts:
        package = parts[parts.index("site-packages") + 1]
        return function, package.removeprefix("_").removesuffix("_impl").removesuffix("_sdk")
    if any(part.startswith("python3") for part in parts):
        return function, "python"
    return function, "the service"


SERVICE_NAME = "generated service (BentoML)"
MLFLOW_NAME = "mlflow models serve"
CEILING_NAME = "ceiling: bare ASGI, uvicorn + ONNX Runtime"
FLOOR_NAME = "floor: in-process, no HTTP"
# What marks a worker among a server's processes: BentoML's worker module, uvicorn's spawned ones.
SERVICE_WORKER = "_bentoml_impl.worker.service"
CEILING_WORKER = "spawn_main"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--soak", type=int, default=60, help="seconds of load for the memory table")
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy on a worker")
    args = parser.parse_args()
    project: Path = args.project.resolve()
    if shutil.which("wrk") is None:
        fail("the serving benchmark needs wrk on PATH: apt-get install wrk, or brew install wrk")
    body = project / "build/example.json"
    if not body.is_file():
        fail(f"{body} is missing: run make train register bento in {project} first")
    records = json.loads(body.read_text())["records"]
    model = model_folder(project)

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        (work / "wrk.lua").write_text(WRK_SCRIPT)
        (work / "mlflow.json").write_text(json.dumps({"dataframe_records": records}))
        (work / "ceiling.py").write_text(CEILING)
        bentoml = stack.enter_context(
            server(["make", "serve", "PORT=3201"], project, "http://127.0.0.1:3201/readyz",
                   project / "build/bench-bentoml.log")
        )  # fmt: skip
        mlflow = stack.enter_context(
            server(["uv", "run", "--locked", "mlflow", "models", "serve", "--env-manager", "local",
                    "--model-uri", "models:/tumor_classifier@staging",
                    "--host", "127.0.0.1", "--port", "3202"],
                   project, "http://127.0.0.1:3202/ping", project / "build/bench-mlflow.log")
        )  # fmt: skip
        ceiling = stack.enter_context(
            server(["uv", "run", "--locked", "uvicorn", "ceiling:app", "--app-dir", str(work),
                    "--workers", "2", "--loop", "uvloop", "--http", "httptools",
                    "--lifespan", "off", "--no-access-log",
                    "--host", "127.0.0.1", "--port", "3203"],
                   project, "http://127.0.0.1:3203/readyz", project / "build/bench-ceiling.log",
                   {"BENCH_MODEL": str(model)})
        )  # fmt: skip
        contenders = [
            (SERVICE_NAME, bentoml, "http://127.0.0.1:3201/predict", body),
            (MLFLOW_NAME, mlflow, "http://127.0.0.1:3202/invocations", work / "mlflow.json"),
            (CEILING_NAME, ceiling, "http://127.0.0.1:3203/predict", body),
        ]
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in contenders}
        rounds[FLOOR_NAME] = []
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", file=sys.stderr)
            for name, pid, url, payload in contenders:
                wrk(url, payload, work / "wrk.lua", 2, args.connections)  # warm up
                before = cpu_seconds(pid)
                figures = wrk(url, payload, work / "wrk.lua", args.seconds, args.connections)
                figures["cpu"] = cpu_seconds(pid) - before
                rounds[name].append(figures)
            rounds[FLOOR_NAME].append(floor(project, body, args.seconds, model))
        report = table(rounds, args.connections)
        print(report)
        if args.soak:
            report += "\n\n" + soak(
                {
                    SERVICE_NAME: (bentoml, SERVICE_WORKER, contenders[0][2]),
                    CEILING_NAME: (ceiling, CEILING_WORKER, contenders[2][2]),
                },
                body, work / "wrk.lua", args.soak, 10,
            )  # fmt: skip
        if args.profile:
            report += "\n\n" + profile(
                bentoml, SERVICE_WORKER, contenders[0][2], body, work / "wrk.lua", args.profile
            )
    (project.parent / "serving.md").write_text(report + "\n")
    print(report.split("\n\n", 1)[1] if "\n\n" in report else "")


if __name__ == "__main__":
    main()
