"""`make loadtest`: real load on the real service, judged against the SLO in params.yaml.

locust patches the standard library when imported, which pytest's process has already loaded:
the load test runs as its own process, as `make loadtest` runs it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tumor_classifier.params import Params, SloParams

from conftest import Served, write_params


def loadtest(
    served: Served, workdir: Path, p: Params, slo: SloParams
) -> subprocess.CompletedProcess[str]:
    serve = p.serve.model_copy(update={"slo": slo})
    write_params(workdir, p.model_copy(update={"serve": serve}))
    served.test.to_parquet("rows.parquet")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.ops.loadtest",
            "--url",
            served.url,
            "--users",
            "4",
            "--seconds",
            "3",
            "--rows",
            "rows.parquet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_short_run_meets_a_loose_slo(
    served: Served, workdir: Path, customers_params: Params
) -> None:
    slo = SloParams(p99_ms=5000, error_rate=0.0, rejected_rate=0.0)
    result = loadtest(served, workdir, customers_params, slo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("error_rate 0\n")
    requests = float(result.stdout.split("requests ")[1].split(",")[0])
    assert requests > 50


@pytest.mark.score("Mon6")
@pytest.mark.parametrize("slo", [SloParams(p99_ms=0.001, error_rate=0.0, rejected_rate=0.0)])
def test_a_missed_slo_fails_in_one_line(
    served: Served, workdir: Path, customers_params: Params, slo: SloParams
) -> None:
    result = loadtest(served, workdir, customers_params, slo)
    assert result.returncode == 1
    assert result.stderr.startswith("loadtest: SLO missed: p99 ")
    assert result.stderr.count("\n") == 1
