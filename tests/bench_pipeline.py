"""Pipeline benchmark: `make train` on the example data, each stage's imports, and every stage's
time as the rows grow.

In a freshly set-up project: a cold `make train` and a no-op re-run on the shipped data; the time
each stage's module takes to import (`python -X importtime`, best of three); then, for
each size, synthetic rows drawn from the example data (resampled with 2 % multiplicative noise, so
rows stay distinct and labels stay learnable), a schema inferred for them, and each stage of
dvc.yaml forced alone and timed. Growth is reported against the smallest size of the same run.
The project's example data and results are put back at the end.

    python tests/bench_pipeline.py build/bench/tumor-classifier [--rows 10000 100000 1000000]
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import yaml
from conftest import ENV

# Run in the project's environment: N synthetic rows in data/raw.csv, from the example data.
SYNTHESIZE = """
import sys
import numpy as np
import pandas as pd
example = pd.read_csv(sys.argv[1])
rows = example.sample(int(sys.argv[2]), replace=True, random_state=0).reset_index(drop=True)
numeric = rows.select_dtypes("number").columns
rows[numeric] *= np.random.default_rng(0).normal(1, 0.02, (len(rows), len(numeric)))
rows.to_csv("data/raw.csv", index=False)
"""


def fail(message: str) -> NoReturn:
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def timed(command: list[str], project: Path) -> float:
    """Seconds the command took; its output only when it fails."""
    return measured(command, project)[0]


def measured(command: list[str], project: Path) -> tuple[float, float]:
    """Seconds the command took, and the CPU seconds it and its children used: on a shared
    machine the second is close to what the first would be on an idle one."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = subprocess.run(command, cwd=project, env=ENV, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        fail(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


# The CPU seconds an import takes in a fresh interpreter, and each package's share of its time.
IMPORT = """
import sys, time
start = time.process_time()
__import__(sys.argv[1])
print(time.process_time() - start)
"""


def import_seconds(module: str, project: Path) -> tuple[float, str]:
    """CPU seconds to import a module (best of 3), and the package that takes most of them."""
    runs, shares = [], {}
    for _ in range(3):
        command = ["uv", "run", "--locked", "python", "-X", "importtime", "-c", IMPORT, module]
        result = subprocess.run(command, cwd=project, env=ENV, capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"import {module} failed:\n{result.stderr[-2000:]}")
        runs.append(float(result.stdout.split()[-1]))
        # import time: self [us] | cumulative | imported package
        rows = [line.split("|") for line in result.stderr.splitlines() if line.startswith("import")]
        cumulative = {name.strip(): int(total) for _, total, name in rows[1:]}
        shares = {k: v / cumulative[module] for k, v in cumulative.items() if "." not in k}
    package = module.split(".")[0]
    heaviest = max((name for name in shares if name != package), key=shares.__getitem__)
    return min(runs), f"{heaviest} ({shares[heaviest]:.0%})"


def growth(seconds: dict[int, dict[str, float]], stages: list[str]) -> list[str]:
    """The stage-by-size table, with each stage's growth from the smallest size to the largest."""
    sizes = sorted(seconds)
    first, last = sizes[0], sizes[-1]
    lines = ["| stage | " + " | ".join(f"{n:,} rows" for n in sizes) + f" | {last:,} ÷ {first:,} |"]
    lines.append("|---|" + "---:|" * (len(sizes) + 1))
    for stage in [*stages, "total"]:
        row = {
            n: seconds[n][stage] if stage != "total" else sum(seconds[n].values()) for n in sizes
        }
        lines.append(
            f"| {stage} | " + " | ".join(f"{row[n]:.1f} s" for n in sizes)
            + f" | {row[last] / row[first]:.1f}× |"
        )  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    project: Path = args.project.resolve()
    if not (project / ".venv").is_dir():
        fail(f"{project} has no environment: run make setup in it first")

    cold, cold_cpu = measured(["make", "train"], project)
    noop, noop_cpu = measured(["make", "train"], project)
    lines = [
        f"`make train` on the example data: cold {cold:.1f} s ({cold_cpu:.1f} s of CPU), "
        f"no-op re-run {noop:.1f} s ({noop_cpu:.1f} s of CPU), "
        f"{cold / noop:.0f}× faster from the DVC cache.",
        "",
    ]
    print(lines[0], file=sys.stderr)

    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    stages = list(pipeline)
    lines += ["| stage | import (CPU) | heaviest import (share) |", "|---|---:|---|"]
    for stage in stages:
        seconds_, heaviest = import_seconds(pipeline[stage]["cmd"].split()[2], project)
        lines.append(f"| {stage} | {seconds_:.2f} s | {heaviest} |")
        print(f"import {stage}: {seconds_:.2f} s ({heaviest})", file=sys.stderr)
    lines.append("")
    example = project.parent / "example-raw.csv"
    example.write_bytes((project / "data/raw.csv").read_bytes())
    lock = (project / "dvc.lock").read_bytes()
    seconds: dict[int, dict[str, float]] = {}
    try:
        for rows in sorted(args.rows):
            timed(
                ["uv", "run", "--locked", "python", "-c", SYNTHESIZE, str(example), str(rows)],
                project,
            )
            timed(["make", "schema"], project)
            seconds[rows] = {}
            for stage in stages:
                repro = ["uv", "run", "--locked", "dvc", "repro", "--single-item", "--force", stage]
                seconds[rows][stage] = timed(repro, project)
                print(f"{rows} rows: {stage} {seconds[rows][stage]:.1f} s", file=sys.stderr)
    finally:
        # The shipped data, its schema and the example run's outputs (from the DVC cache) come back.
        subprocess.run(["git", "checkout", "--", "data/schema.yaml"], cwd=project, env=ENV)
        (project / "dvc.lock").write_bytes(lock)
        subprocess.run(["uv", "run", "--locked", "dvc", "checkout", "--force", "--quiet"],
                       cwd=project, env=ENV)  # fmt: skip

    if seconds:  # ROWS= (none) measures the example data only
        lines += growth(seconds, stages)
    report = "\n".join(lines)
    (project.parent / "pipeline.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
