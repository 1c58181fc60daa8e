"""Stream benchmark: records/s of the generated stream consumer beside the service's, same run.

First the service (`make serve`) under wrk's load (bench_serving.py's), posting build/example.json:
its requests/s, and records/s at that body's records per request. Then the same records, repeated,
wait in the stream `records` of a real redis-server, and one consumer (`make stream`) predicts them
all, in its batches of 100; its clock runs from its first prediction to its last, so that imports
and model loading stay out. Prints a markdown table, records/s as a ratio of the service's.

    python tests/bench_stream.py build/bench/tumor-classifier [--records 20000] [--seconds 10]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench_pipeline import fail
from bench_serving import WRK_SCRIPT, server, wrk
from conftest import ENV, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=10, help="of wrk's load on the service")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    project: Path = args.project.resolve()
    redis_server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if redis_server is None or cli is None:
        fail("the stream benchmark needs redis-server: apt-get install redis-server")
    if shutil.which("wrk") is None:
        fail("the stream benchmark needs wrk on PATH: apt-get install wrk, or brew install wrk")
    body = project / "build/example.json"
    if not body.is_file():
        fail(f"{body} is missing: run make train bento in {project} first")
    examples = [json.dumps(r) for r in json.loads(body.read_text())["records"]]
    requests = served(project, body, args.seconds, args.connections)
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        broker = subprocess.Popen(
            [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--dir", folder],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            redis = [cli, "-p", str(port)]
            deadline = time.monotonic() + 10
            while subprocess.run([*redis, "ping"], capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    fail("redis-server did not start")
                time.sleep(0.05)
            # redis-cli --pipe takes the commands in Redis's own protocol, all in one go.
            commands = [
                ["XADD", "records", "*", "record", examples[i % len(examples)]]
                for i in range(args.records)
            ]
            subprocess.run([*redis, "--pipe"], input=b"".join(map(protocol, commands)), check=True,
                           capture_output=True)  # fmt: skip
            rate = consume(project, redis, port, args.records)
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    service = requests * len(examples)
    print("| predicted by | requests/s | records/s | records/s ÷ the service's |")
    print("|---|---:|---:|---:|")
    print(
        f"| `make serve` ({args.connections} connections, {len(examples)}-record requests) "
        f"| {requests:.0f} | {service:.0f} | 1.0× |"
    )
    print(f"| `make stream` (one consumer, batches of 100) | | {rate:.0f} "
          f"| {rate / service:.1f}× |")  # fmt: skip


def served(project: Path, body: Path, seconds: int, connections: int) -> float:
    """The service's requests/s under wrk, after a warm-up, as bench_serving.py measures it."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "wrk.lua"
        script.write_text(WRK_SCRIPT)
        log = project / "build/bench-stream-serve.log"
        with server(
            ["make", "serve", f"PORT={port}"], project, f"http://127.0.0.1:{port}/readyz", log
        ):
            url = f"http://127.0.0.1:{port}/predict"
            wrk(url, body, script, 2, connections)
            figures = wrk(url, body, script, seconds, connections)
    if figures["errors"]:
        fail(f"the service answered {figures['errors']:.0f} requests with errors; see {log}")
    return float(figures["requests"] / figures["seconds"])


def protocol(command: list[str]) -> bytes:
    parts = [f"*{len(command)}\r\n".encode()]
    for word in command:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def consume(project: Path, redis: list[str], port: int, records: int) -> float:
    """Records/s from the first prediction written to the last."""

    def written() -> int:
        return int(subprocess.run([*redis, "xlen", "predictions"], capture_output=True).stdout)

    env = {**ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "METRICS_PORT": str(free_port())}
    # Its own process group: stopping make stops the consumer it started.
    consumer = subprocess.Popen(
        ["make", "--no-print-directory", "stream"], cwd=project, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        while written() == 0:
            if consumer.poll() is not None:
                fail(f"make stream exited: {consumer.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            time.sleep(0.01)
        start, first = time.perf_counter(), written()
        while written() < records:
            if consumer.poll() is not None:
                fail("make stream exited before the last record")
            time.sleep(0.02)
        return (records - first) / (time.perf_counter() - start)
    finally:
        os.killpg(consumer.pid, signal.SIGTERM)
        consumer.wait(timeout=30)


if __name__ == "__main__":
    main()
