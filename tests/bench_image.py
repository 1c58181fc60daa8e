"""Image benchmark: deploy/image/Dockerfile against BentoML's generated Dockerfile, in one run.

Both are built by podman from the same Bento (build/bento) on the same local stand-in of their base
(see local_podman), so the difference is the Dockerfiles'. For each image: its size, uncompressed
and gzip-compressed (about what a registry stores and a node pulls), and its start to ready, from
`podman run` to the first answer of /readyz. The same Bento served on the host without a container
(`bentoml serve`) is the floor of the start. Starts are interleaved, the median of each is shown,
so that a noisy neighbour slows all alike. Prints a markdown table with ratios against BentoML's
image and writes it beside the project (image.md).

    python tests/bench_image.py build/bench/tumor-classifier [--starts 5]
"""

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import local_podman
from bench_pipeline import fail
from conftest import ENV, free_port
from local_podman import Podman

DOCKERFILES = {
    "`deploy/image/Dockerfile`": "deploy/image/Dockerfile",
    "BentoML's generated Dockerfile": "build/bento/env/docker/Dockerfile",
}
BASELINE = "BentoML's generated Dockerfile"
HOST = "the Bento on the host, no container (floor)"


@dataclass
class Figures:
    build: float = 0
    size: int = 0
    compressed: int = 0
    starts: list[float] = field(default_factory=list)


def compressed_size(podman: Podman, image: str) -> int:
    """Bytes of the image saved and gzip-compressed at gzip's default level."""
    save = subprocess.Popen(
        ["podman", "save", "--format", "docker-archive", image],
        env=podman.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert save.stdout is not None
    compressor, size = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    while chunk := save.stdout.read(1 << 20):
        size += len(compressor.compress(chunk))
    if save.wait() != 0:
        fail(f"podman save {image} failed")
    return size + len(compressor.flush())


def ready_after(start: float, port: int) -> float:
    """Seconds from start to the first answer of /readyz on port."""
    while time.monotonic() - start < 180:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.05)
    fail(f"nothing was ready on port {port} after 180 s")


def container_start(podman: Podman, image: str) -> float:
    port, start = free_port(), time.monotonic()
    container = podman("run", "--detach", "--rm", "--publish", f"127.0.0.1:{port}:3000", image)
    try:
        return ready_after(start, port)
    finally:
        podman("stop", "--time", "30", container.stdout.strip(), check=False)


def host_start(project: Path) -> float:
    port, start = free_port(), time.monotonic()
    with tempfile.TemporaryDirectory() as home:
        server = subprocess.Popen(
            [str(project / ".venv/bin/bentoml"), "serve", ".", "--port", str(port)],
            cwd=project / "build/bento", env=ENV | {"BENTOML_HOME": home},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            return ready_after(start, port)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    project: Path = args.project.resolve()
    if reason := local_podman.missing():
        print(f"image benchmark: skipped, {reason}")
        return
    if not (project / "build/bento/env/python/requirements.lock.txt").is_file():
        fail(f"no Bento in {project}/build/bento: run make train bento there first")
    figures = {name: Figures() for name in (*DOCKERFILES, HOST)}
    with tempfile.TemporaryDirectory() as tmp:
        podman = Podman(Path(tmp))
        tags = {name: f"localhost/bench-image:{number}" for number, name in enumerate(DOCKERFILES)}
        for number, (name, path) in enumerate(DOCKERFILES.items()):
            tag, row = tags[name], figures[name]
            dockerfile = podman.local_dockerfile(project / path, Path(tmp) / f"Dockerfile.{number}")
            start = time.monotonic()
            podman("build", "--pull=never", "--network", "host", "--file", str(dockerfile),
                   "--tag", tag, str(project / "build/bento"))  # fmt: skip
            row.build = time.monotonic() - start
            row.size = int(podman("image", "inspect", "--format={{.Size}}", tag).stdout)
            row.compressed = compressed_size(podman, tag)
        for _ in range(args.starts):
            for name, tag in tags.items():
                figures[name].starts.append(container_start(podman, tag))
            figures[HOST].starts.append(host_start(project))
        podman("system", "prune", "--all", "--force", check=False)
    report = table(figures, args.starts)
    (project.parent / "image.md").write_text(report + "\n")
    print(report)


def table(figures: dict[str, Figures], starts: int) -> str:
    baseline = figures[BASELINE]
    lines = [
        f"| served from | size | compressed | start to ready (median of {starts}) | cold build "
        "| size ÷ BentoML's | start ÷ BentoML's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in figures.items():
        ready = statistics.median(row.starts)
        sizes = (
            f"{row.size / 1e6:.0f} MB | {row.compressed / 1e6:.0f} MB" if row.size else "n/a | n/a"
        )
        build = f"{row.build:.0f} s" if row.build else "n/a"
        ratio = f"{row.size / baseline.size:.2f}×" if row.size else "n/a"
        lines.append(
            f"| {name} | {sizes} | {ready:.1f} s | {build} | {ratio} "
            f"| {ready / statistics.median(baseline.starts):.2f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
