"""Image benchmark: deploy/image/Dockerfile against BentoML's generated Dockerfile, in one run.

Both are built by podman from the same Bento (build/bento) on the same local stand-in of their base
(see local_podman), so the difference is the Dockerfiles'. For each image: its size, uncompressed
and gzip-compressed (about what a registry stores and a node pulls), and its start to ready, from
`podman run` to the first answer of /readyz, the median of interleaved starts. Prints a markdown
table with ratios against BentoML's and writes it beside the project (image.md).

    python tests/bench_image.py build/bench/tumor-classifier [--starts 5]
"""

import argparse
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
from conftest import free_port
from local_podman import Podman

DOCKERFILES = {
    "`deploy/image/Dockerfile`": "deploy/image/Dockerfile",
    "BentoML's generated Dockerfile": "build/bento/env/docker/Dockerfile",
}
BASELINE = "BentoML's generated Dockerfile"


@dataclass
class Figures:
    build: float
    size: int
    compressed: int
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


def start_to_ready(podman: Podman, image: str) -> float:
    """Seconds from `podman run` to the first answer of /readyz."""
    port = free_port()
    start = time.monotonic()
    container = podman("run", "--detach", "--rm", "--publish", f"127.0.0.1:{port}:3000", image)
    try:
        while time.monotonic() - start < 180:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    return time.monotonic() - start
            except OSError:
                time.sleep(0.05)
        fail(f"{image} was not ready after 180 s")
    finally:
        podman("stop", "--time", "30", container.stdout.strip(), check=False)


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
    figures: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        podman = Podman(Path(tmp))
        tags = {name: f"localhost/bench-image:{number}" for number, name in enumerate(DOCKERFILES)}
        for name, path in DOCKERFILES.items():
            dockerfile = podman.local_dockerfile(
                project / path, Path(tmp) / f"Dockerfile.{tags[name][-1]}"
            )
            start = time.monotonic()
            podman("build", "--pull=never", "--network", "host", "--file", str(dockerfile),
                   "--tag", tags[name], str(project / "build/bento"))  # fmt: skip
            built = time.monotonic() - start
            size = int(podman("image", "inspect", "--format", "{{.Size}}", tags[name]).stdout)
            figures[name] = Figures(built, size, compressed_size(podman, tags[name]))
        # Interleaved, so that a noisy neighbour slows both alike.
        for _ in range(args.starts):
            for name, tag in tags.items():
                figures[name].starts.append(start_to_ready(podman, tag))
        podman("system", "prune", "--all", "--force", check=False)
    report = table(figures, args.starts)
    (project.parent / "image.md").write_text(report + "\n")
    print(report)


def table(figures: dict[str, Figures], starts: int) -> str:
    baseline = figures[BASELINE]
    lines = [
        f"| image | size | compressed | start to ready (median of {starts}) | cold build "
        "| size ÷ BentoML's | start ÷ BentoML's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in figures.items():
        ready = statistics.median(row.starts)
        lines.append(
            f"| {name} | {row.size / 1e6:.0f} MB | {row.compressed / 1e6:.0f} MB | {ready:.1f} s "
            f"| {row.build:.0f} s | {row.size / baseline.size:.2f}× "
            f"| {ready / statistics.median(baseline.starts):.2f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
