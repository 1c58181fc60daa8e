"""The published contract, fuzzed: schemathesis sends the running service what its OpenAPI
document allows and what it forbids, with every check; each answer must be one it describes."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from conftest import Served

# schemathesis's command, from this environment.
ST = Path(sys.executable).with_name("st")
# Bounded and repeatable: a fixed seed, a few examples per operation and phase (a time budget
# would make schemathesis repeat its phases until the budget is spent; the timeout below bounds it).
BOUNDS = ["--seed", "1", "--max-examples", "30", "--workers", "2"]
# The negative runs send /predict schema-valid requests (the coverage phase starts at the bounds)
# and stop at the first finding.
FIRST = ["--include-path", "/predict", "--phases", "coverage", "--mode", "positive"]
FIRST += ["--max-failures", "1"]
# With serve.out_of_range: flag, a record may hold any finite 32-bit number, and the model may still
# give no finite probability for it: that record gets the document's 400, never a NaN. There, and
# only there, schema-valid data may get a 400; any other status is still a finding.
FLAG_CONFIG = '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "400"]\n'


def fuzz(
    location: str, url: str, folder: Path, *options: str, config: str = ""
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`st run` with every check against the service at url: its output, and its JSON report."""
    settings = folder / "schemathesis.toml"
    settings.write_text(config)
    command = [
        *(str(ST), "--config-file", str(settings), "run", location, "--url", url),
        *("--checks", "all", *BOUNDS, *options),
        *("--request-timeout", "15", "--generation-database", "none", "--no-color"),
        *("--report", "json", "--report-json-path", str(folder / "report.json")),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=folder)
    report = json.loads((folder / "report.json").read_text())
    return result, report


def assert_no_finding(result: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert report["failures"] == []
    assert report["errors"] == []
    assert not any(report["warnings"].values()), report["warnings"]
    # It did fuzz: every operation, in both phases that generate requests, /predict the most.
    operations = report["operations"]
    assert operations["tested"] == operations["total"] >= 5
    assert {report["phases"][p]["status"] for p in ("coverage", "fuzzing")} == {"success"}
    accepted = report["valid_rates"]["POST /predict"]
    assert accepted["coverage"]["accepted"] > 0
    assert accepted["fuzzing"]["accepted"] > 0
    assert report["test_cases"]["generated"] >= 100


def test_the_service_keeps_the_contract_it_publishes(served: Served, tmp_path: Path) -> None:
    """As shipped (out-of-range numbers refused)."""
    assert_no_finding(*fuzz(f"{served.url}/docs.json", served.url, tmp_path))


def test_the_flagging_service_keeps_the_contract_it_publishes(
    flagging: Served, tmp_path: Path
) -> None:
    """With serve.out_of_range: flag, and numbers up to the 32-bit limit that overflow the model."""
    url = flagging.url
    assert_no_finding(*fuzz(f"{url}/docs.json", url, tmp_path, config=FLAG_CONFIG))


def test_without_the_allowance_the_model_overflow_is_a_finding(
    flagging: Served, tmp_path: Path
) -> None:
    """The allowance above is needed, and positive_data_acceptance is one of the checks run."""
    result, _ = fuzz(f"{flagging.url}/docs.json", flagging.url, tmp_path, *FIRST)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Schema-valid request rejected" in result.stdout
    assert "non_finite_prediction" in result.stdout


def test_a_document_that_disagrees_with_the_answers_is_a_finding(
    served: Served, tmp_path: Path
) -> None:
    """The same run, against a document that says the model version is a number: a finding."""
    with urllib.request.urlopen(f"{served.url}/docs.json", timeout=10) as response:
        spec: dict[str, Any] = json.load(response)
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    ok["schema"]["properties"]["model_version"] = {"type": "integer"}
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(spec))
    result, report = fuzz(str(wrong), served.url, tmp_path, *FIRST)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Response violates schema" in result.stdout
    assert report["failures"]
