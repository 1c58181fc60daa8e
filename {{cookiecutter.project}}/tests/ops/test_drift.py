"""`make current` and `make drift`: shifted requests are caught, unshifted ones are not."""

import html
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import joblib
import pandas as pd
import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import drift
from tumor_classifier.params import Params
from tumor_classifier.pipeline import reference, split, train, validate

from conftest import write_params


@pytest.fixture(scope="module")
def project(
    cancer: pd.DataFrame, project_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """What `make drift` reads: schema, model, reference sample; and the held-out rows."""
    folder = tmp_path_factory.mktemp("drift")
    p = project_params
    (folder / "schema.yaml").write_text(str(validate.infer(cancer, p.data, 0.1).to_yaml()))
    train_rows, test_rows = split.split(cancer, "diagnosis", p.split)
    model = train.fit(train_rows, p.data, p.train).model
    joblib.dump(model, folder / "model.joblib")
    reference.sample(train_rows, model, p.data, p.reference, 0).to_parquet(
        folder / "reference.parquet"
    )
    test_rows.drop(columns="diagnosis").to_csv(folder / "calm.csv", index=False)
    shifted = test_rows.drop(columns="diagnosis")
    for column in [c for c in shifted.columns if c.startswith("mean_")]:
        shifted[column] *= 1.3  # a recalibrated scanner: every mean measurement reads 30 % high
    shifted.to_csv(folder / "shifted.csv", index=False)
    eight = test_rows.drop(columns="diagnosis")
    for column in [c for c in eight.columns if c.startswith("worst_")][:8]:
        eight[column] *= 1.3  # 8 of 30 features: below drift.share, but the prediction mix moves
    eight.to_csv(folder / "eight.csv", index=False)
    write_params(folder, p)
    return folder


def run_drift(project: Path, current: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(project)
    args = [
        "report",
        current,
        "out",
        "--reference",
        "reference.parquet",
        "--model",
        "model.joblib",
        "--schema",
        "schema.yaml",
    ]
    try:
        drift.main(args)
    finally:
        result: dict[str, Any] = json.loads((project / "out/drift.json").read_text())
    return result


def test_unshifted_requests_show_no_drift(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_drift(project, "calm.csv", monkeypatch)
    assert result["drift"] is False
    assert (project / "out/report.html").stat().st_size > 10_000
    assert (project / "out/summary.md").read_text().startswith("**No drift**")


def test_shifted_requests_fail_with_the_drifted_features(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="drift in mean_radius"):
        run_drift(project, "shifted.csv", monkeypatch)
    result = json.loads((project / "out/drift.json").read_text())
    assert result["drift"] is True
    assert result["checks"]["features"] is False
    assert {c for c in result["drifted"] if c.startswith("mean_")} == {
        c for c in result["scores"] if c.startswith("mean_")
    }
    assert (project / "out/summary.md").read_text().startswith("**Drift detected**")


@pytest.mark.score("Mon7")
def test_a_moved_prediction_mix_is_drift(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prediction bias, the sign of lost quality that needs no labels: requests the model calls
    malignant only, while a third of the training data is."""
    calm = pd.read_csv(project / "calm.csv")
    model = joblib.load(project / "model.joblib")
    calm[model.predict(calm) == "malignant"].to_csv(project / "malignant.csv", index=False)
    with pytest.raises(UserError, match="drift"):
        run_drift(project, "malignant.csv", monkeypatch)
    result = json.loads((project / "out/drift.json").read_text())
    assert result["checks"]["prediction"] is False
    assert "prediction" in result["drifted"]
    assert "the prediction mix drifted too" in (project / "out/summary.md").read_text()


@pytest.mark.parametrize(
    ("current", "verdict"), [("eight.csv", "Drift detected"), ("calm.csv", "No drift")]
)
def test_the_page_a_person_opens_leads_with_the_verdict_of_the_exit_code(
    project: Path, monkeypatch: pytest.MonkeyPatch, current: str, verdict: str
) -> None:
    """Eight of thirty features shifted: too few for Evidently's own "Dataset Drift" (a share of
    drift.share), yet the prediction mix moved, so make drift exits 1. report.html opens with
    that verdict and its reasons, as summary.md does, and lists the drifted columns first."""
    if verdict == "Drift detected":
        with pytest.raises(UserError, match="drift in "):
            run_drift(project, current, monkeypatch)
    else:
        run_drift(project, current, monkeypatch)
    result = json.loads((project / "out/drift.json").read_text())
    assert result["drift"] is (verdict == "Drift detected")
    page = (project / "out/report.html").read_text()
    summary = (project / "out/summary.md").read_text()
    head = re.search(r"<h1[^>]*>(.*?)</h1><p>(.*?)</p>", page)
    assert head is not None
    assert summary.splitlines()[0] == f"**{head[1]}** {html.unescape(head[2])}"
    assert head[1] == verdict
    assert page.split("<body>", 1)[1].startswith('<section id="verdict"')  # before Evidently's
    table = page.split("<h2>Columns, the drifted first</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td>(yes|)</td>", table)
    assert len(rows) == 31  # 30 features and the prediction
    flags = [drifted == "yes" for _, drifted in rows]
    assert flags == sorted(flags, reverse=True)
    assert {name for name, drifted in rows if drifted} == set(result["drifted"])
    if verdict == "Drift detected":
        # Evidently's share is not reached; the prediction mix decides, and the page says so.
        assert result["checks"] == {"features": True, "prediction": False, "missing values": True}
        assert "the prediction mix drifted too" in head[2]


def test_current_keeps_only_request_records(tmp_path: Path) -> None:
    logs = tmp_path / "serve.log"
    record = {
        "mean_radius": 12.0,
        "prediction": "benign",
        "probability_benign": 0.9,
        "model_version": "abc",
    }
    logs.write_text(
        "2026-11-23T10:00:00 [INFO] [cli] Starting production HTTP BentoServer\n"
        f"{json.dumps(record)}\n"
        f"2026-11-23T10:00:01Z stdout F {json.dumps(record)}\n"
        '{"level": "info", "message": "not a request"}\n'
        "{broken\n"
    )
    assert drift.current(str(logs), tmp_path / "current.jsonl") == 2
    assert [json.loads(line) for line in (tmp_path / "current.jsonl").read_text().splitlines()] == [
        record
    ] * 2
    logs.write_text("nothing here\n")
    with pytest.raises(UserError, match="no request records"):
        drift.current(str(logs), tmp_path / "current.jsonl")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["current", "", "out.jsonl"], "no LOGS: make current LOGS="),
        (["current", "missing.log", "out.jsonl"], "cannot read missing.log"),
        (
            ["current", "http://127.0.0.1:9/logs", "out.jsonl"],
            "cannot read http://127.0.0.1:9/logs",
        ),
        (["report", "missing.jsonl", "out"], "missing.jsonl: no such file; make current LOGS="),
    ],
)
def test_missing_logs_or_requests_say_how_to_get_them(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        drift.main(argv)


class FakeGitHub(BaseHTTPRequestHandler):
    """GitHub's issues API, as far as the monitor workflow uses it."""

    issues: ClassVar[list[dict[str, Any]]] = []

    def reply(self, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.reply([i for i in self.issues if i["state"] == "open" and "drift" in i["labels"]])

    def do_POST(self) -> None:
        issue = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.issues.append({**issue, "number": len(self.issues) + 1, "state": "open"})
        self.reply(self.issues[-1])

    def do_PATCH(self) -> None:
        number = int(self.path.rsplit("/", 1)[1])
        self.issues[number - 1].update(
            json.loads(self.rfile.read(int(self.headers["content-length"])))
        )
        self.reply(self.issues[number - 1])

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    FakeGitHub.issues = []
    server = HTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_one_issue_however_often_drift_recurs(api: str) -> None:
    assert drift.publish(api, "org/repo", "token", "first") == "opened issue #1"
    assert drift.publish(api, "org/repo", "token", "second") == "updated issue #1"
    assert [(i["number"], i["body"], i["labels"]) for i in FakeGitHub.issues] == [
        (1, "second", ["drift"])
    ]
