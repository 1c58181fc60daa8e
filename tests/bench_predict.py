"""Batch benchmark: `make predict` on growing files against the in-process ONNX floor.

In a trained project: for each size, a Parquet file of that many rows made from the test split
(each number between two test rows' values, so every row meets the contract; row groups of
100,000 rows, as a streaming writer makes them: a Parquet file is read a row group at a time);
`make predict` on it, timed, with the peak memory of its processes; and the floor, ONNX Runtime
alone on the same rows already in memory, in batches of the size of `make predict`'s chunks.
`make predict`'s time is from after its module's imports (the same for any file) to its output
written: loading the model (ONNX Runtime's session; scikit-learn too where no ONNX export
serves), reading, checking, predicting, writing. Each file is predicted twice: as `make predict`
writes by default (every input column again, then the predictions) and with KEEP=others (beside
the predictions only the input columns the model does not read: here none).
Peak memory is against the smallest size's, and should stay flat, as `make predict` holds three
chunks at most (one read ahead, one predicted, one being written). Each side's CPU seconds (all its
threads) are beside its time: on a shared machine the CPU ratio moves less than the wall-clock one,
and it says how much of `make predict` is work beyond the model's (reading, checking, writing).

Each figure is the median of --repeats runs, the floor and both outputs taken in turn, so that a
slower moment of a shared machine falls on each side alike.

    python tests/bench_predict.py build/bench/tumor-classifier [--rows 100000 1000000] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_pipeline import ENV, fail

# Run in the project's environment: N rows of the test split's features, as Parquet. Each number
# lies between the values of two test rows, so it is within the contract's ranges, and nearly all
# are distinct, as measurements are: a few rows repeated encode and decode faster than real data.
SAMPLE = """
import sys
import numpy as np
import pandas as pd
from tumor_classifier.params import load
data = load().data
rows = pd.read_parquet("data/split/test.parquet").drop(columns=[data.target, *data.drop])
n = int(sys.argv[1])
one, two = (rows.sample(n, replace=True, random_state=s).reset_index(drop=True) for s in (0, 1))
numeric = one.select_dtypes("number").columns
share = np.random.default_rng(0).random((n, 1))
one[numeric] = one[numeric] * share + two[numeric] * (1 - share)
one.to_parquet(sys.argv[2], index=False, row_group_size=100_000)
"""

# Run in the project's environment: rows/s of ONNX Runtime alone, on rows already in memory.
FLOOR = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
from tumor_classifier import contract
from tumor_classifier.params import load
from tumor_classifier.serving.predict import CHUNK_ROWS, Predictor
features = contract.from_schema(Path("data/schema.yaml").read_text(), load().data)
predictor = Predictor(features, Path("models/model.joblib"), Path("models/onnx/model.onnx"))
frame = pd.read_parquet(sys.argv[1])
columns = {f.name: frame[f.name].to_numpy() for f in features}
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
start, cpu_start = time.perf_counter(), cpu()
for at in range(0, len(frame), CHUNK_ROWS):
    predictor.proba({name: values[at : at + CHUNK_ROWS] for name, values in columns.items()})
seconds = time.perf_counter() - start
print(json.dumps({"rows_per_s": len(frame) / seconds, "cpu": cpu() - cpu_start}))
"""

# Run in the project's environment: `make predict`'s code on a file, timed after its module's
# imports, and the peak resident memory of the process.
MEASURE = """
import json, resource, sys, time
import onnxruntime  # imported where the model is loaded: an import, the same for any file
from tumor_classifier.serving import predict
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
start, cpu_start = time.perf_counter(), cpu()
predict.main(sys.argv[1:])
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"seconds": seconds, "cpu": cpu_seconds, "peak_mib": peak}))
"""


OUTPUTS = {"all": "every column", "others": "`KEEP=others`"}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def in_project(code: str, project: Path, *args: str) -> str:
    # The files written so far reach the disk first: the kernel would otherwise throttle the writes
    # of the run being timed while it flushes them (a 3,000,000-row input is 900 MB).
    os.sync()
    result = subprocess.run(
        ["uv", "run", "--locked", "python", "-c", code, *args],
        cwd=project, env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        fail(f"in {project}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return (result.stdout.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    project: Path = args.project.resolve()
    if not (project / "models/onnx/model.onnx").is_file():
        fail(f"no ONNX model in {project}: run make train there first")
    lines = [
        "| output | rows | `make predict` | rows/s | floor rows/s | ÷ floor | CPU s ÷ floor's "
        "| peak memory | ÷ smallest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    (project / "build").mkdir(exist_ok=True)
    base: dict[str, dict[str, float]] = {}
    for rows in sorted(args.rows):
        print(f"{rows} rows", file=sys.stderr)
        source, out = f"build/bench-rows-{rows}.parquet", f"build/bench-predictions-{rows}.parquet"
        in_project(SAMPLE, project, str(rows), source)
        runs: dict[str, list[dict[str, float]]] = {"floor": [], "all": [], "others": []}
        for _ in range(args.repeats):
            runs["floor"].append(json.loads(in_project(FLOOR, project, source)))
            for keep in ("all", "others"):
                measured = in_project(MEASURE, project, source, out, "--keep", keep)
                runs[keep].append(json.loads(measured))
                # Each run writes a new file: replacing the last run's output would time its
                # deletion too (the kernel drops its 300 MB of pages within the rename).
                (project / out).unlink()
        floor = median(runs["floor"])
        for keep in ("all", "others"):
            run = median(runs[keep])
            smallest = base.setdefault(keep, run)
            rate = rows / run["seconds"]
            lines.append(
                f"| {OUTPUTS[keep]} | {rows:,} | {run['seconds']:.1f} s | {rate:,.0f} "
                f"| {floor['rows_per_s']:,.0f} | {rate / floor['rows_per_s']:.2f}× "
                f"| {run['cpu']:.1f} ÷ {floor['cpu']:.1f} | {run['peak_mib']:,.0f} MiB "
                f"| {run['peak_mib'] / smallest['peak_mib']:.2f}× |"
            )
        (project / source).unlink()
    report = "\n".join(lines)
    (project.parent / "predict.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
