"""`make current` and `make drift`: logged requests against the training reference, by Evidently."""

import argparse
import html
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DatasetMissingValueCount, ValueDrift
from evidently.presets import DataDriftPreset
from evidently.tests import lte

from .. import cli, contract, render
from ..data import read_table
from ..params import DriftParams, load
from ..serving.predict import Predictor, predict_frame

Verdict = dict[str, Any]


def current(logs: str, out: Path) -> int:
    """Keep the service's request records from a log file or URL; point this at your log store."""
    try:
        if "://" in logs:
            with urllib.request.urlopen(logs, timeout=60) as response:
                lines = response.read().decode().splitlines()
        else:
            lines = Path(logs).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise cli.UserError(f"cannot read {logs}: {error}") from None
    records = []
    for line in lines:
        start = line.find("{")  # a log collector may prefix a timestamp
        try:
            record = json.loads(line[start:]) if start >= 0 else None
        except ValueError:
            continue
        if isinstance(record, dict) and {"prediction", "model_version"} <= set(record):
            records.append(line[start:])
    if not records:
        raise cli.UserError(f"{logs}: no request records (the service logs a share of requests)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(records) + "\n")
    return len(records)


def report(
    reference: pd.DataFrame,
    now: pd.DataFrame,
    features: list[contract.Feature],
    params: DriftParams,
) -> Any:
    """Evidently's report: drift of each feature and of the prediction (the mix of classes, or a
    regression's distribution of numbers); missing values."""
    names = [f.name for f in features]
    numeric = pd.api.types.is_float_dtype(reference["prediction"])
    definition = DataDefinition(
        numerical_columns=[f.name for f in features if f.numeric] + ["prediction"] * numeric,
        categorical_columns=[f.name for f in features if not f.numeric]
        + ["prediction"] * (not numeric),
    )
    metrics = [
        # Evidently picks each column's test by its type and the sample's size (K-S or chi-square
        # p-values for small samples, distances for large ones): a logged day of a quiet service
        # and a busy one are both judged fairly.
        DataDriftPreset(columns=names, drift_share=params.share),
        ValueDrift(column="prediction"),
        DatasetMissingValueCount(columns=names, share_tests=[lte(params.max_missing_share)]),
    ]
    columns = [*names, "prediction"]
    return Report(metrics, include_tests=True).run(
        Dataset.from_pandas(now[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def verdict(snapshot: dict[str, Any]) -> Verdict:
    """Which columns drifted, each column's score and test, and the three checks that decide."""
    tests = {t["name"]: t for t in snapshot["tests"]}
    status = {name: t["status"] == "SUCCESS" for name, t in tests.items()}
    drift_tests = {
        t["metric_config"]["params"]["column"]: t
        for name, t in tests.items()
        if name.startswith("Value Drift for column")
    }
    scores = {
        m["config"]["column"]: float(m["value"])
        for m in snapshot["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }
    checks = {
        "features": next(v for k, v in status.items() if k.startswith("Share of Drifted Columns")),
        "prediction": status["Value Drift for column prediction"],
        "missing values": next(v for k, v in status.items() if "issing" in k),
    }
    return {
        "drift": not all(checks.values()),
        "checks": checks,
        "drifted": [c for c, t in drift_tests.items() if t["status"] == "FAIL"],
        "scores": scores,
        "tests": {c: t["description"] for c, t in drift_tests.items()},
    }


def headline(result: Verdict, rows: int, params: DriftParams) -> tuple[str, str]:
    """The verdict, and the reasons for it in a sentence."""
    drifted = set(result["drifted"])
    features = len(result["scores"]) - 1
    drifted_features = len(drifted - {"prediction"})
    head = "Drift detected" if result["drift"] else "No drift"
    mix = "drifted too" if "prediction" in drifted else "did not drift"
    return head, (
        f"in {rows} records against the training reference: {drifted_features} "
        f"of {features} features drifted (the data drifts from a share of {params.share:g}); "
        f"the prediction mix {mix}."
    )


def tables(result: Verdict) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of the checks table, and of the columns table: the drifted columns first."""
    drifted = set(result["drifted"])
    ordered = sorted(result["scores"], key=lambda c: (c not in drifted, c))
    checks = [(k, "yes" if v else "no") for k, v in result["checks"].items()]
    columns = [
        (c, "yes" if c in drifted else "", result["scores"][c], result["tests"].get(c))
        for c in ordered
    ]
    return checks, columns


CHECKS = ["check", "passed"]
COLUMNS = ["column", "drifted", "score", "test"]


def summary(result: Verdict, rows: int, params: DriftParams) -> str:
    """The markdown an issue or a pull request shows."""
    head, reasons = headline(result, rows, params)
    checks, columns = tables(result)
    return "\n".join(
        [
            f"**{head}** {reasons}\n",
            render.table(CHECKS, checks),
            render.table(COLUMNS, columns),
        ]
    )


def html_table(headers: list[str], rows: list[tuple[Any, ...]]) -> str:
    """The HTML twin of render.table."""

    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(cell(v) for v in row)}</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(evidently: str, result: Verdict, rows: int, params: DriftParams) -> str:
    """Evidently's HTML report, led by the project's verdict: the one the exit code and the
    summary give, for the same reasons. Evidently's own "Dataset Drift" below it weighs the share
    of drifted features alone; the verdict also counts the prediction mix and missing values."""
    head, reasons = headline(result, rows, params)
    checks, columns = tables(result)
    colour = "#b00020" if result["drift"] else "#1b5e20"
    lead = (
        '<section id="verdict" style="font-family: sans-serif; margin: 24px; '
        f'border-left: 6px solid {colour}; padding-left: 16px">'
        f'<h1 style="color: {colour}">{head}</h1><p>{html.escape(reasons)}</p>'
        f"{html_table(CHECKS, checks)}<h2>Columns, the drifted first</h2>"
        f"{html_table(COLUMNS, columns)}"
        "<p>Below, Evidently's report: its <em>Dataset Drift</em> weighs the share of drifted "
        "features alone; the verdict above also counts the prediction mix and missing values."
        "</p></section>"
    )
    at = evidently.index("<body>") + len("<body>")
    return evidently[:at] + lead + evidently[at:]


def github(api: str, token: str, method: str, path: str, payload: Any = None) -> Any:
    """One call of GitHub's REST API."""
    request = urllib.request.Request(
        f"{api}{path}",
        data=None if payload is None else json.dumps(payload).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def publish(api: str, repository: str, token: str, body: str) -> str:
    """Open the drift issue, or update the one still open: one issue, however often drift recurs."""
    found = github(api, token, "GET", f"/repos/{repository}/issues?labels=drift&state=open")
    if found:
        number = found[0]["number"]
        github(api, token, "PATCH", f"/repos/{repository}/issues/{number}", {"body": body})
        return f"updated issue #{number}"
    issue = {"title": "Data drift in served requests", "body": body, "labels": ["drift"]}
    created = github(api, token, "POST", f"/repos/{repository}/issues", issue)
    return f"opened issue #{created['number']}"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="drift", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("current", help="extract request records from service logs")
    fetch.add_argument("logs", help="a log file or URL")
    fetch.add_argument("out", type=Path)
    check = commands.add_parser("report", help="compare records with the training reference")
    check.add_argument("current", type=Path, help="CSV, Parquet or JSON lines of requests")
    check.add_argument("out", type=Path, help="folder for report.html, drift.json and summary.md")
    check.add_argument("--reference", type=Path, default=Path("models/reference/sample.parquet"))
    check.add_argument("--model", type=Path, default=Path("models/model.joblib"))
    check.add_argument("--schema", type=Path, default=Path("data/schema.yaml"))
    issue = commands.add_parser("issue", help="open or update the one drift issue (on GitHub)")
    issue.add_argument("summary", type=Path)
    args = parser.parse_args(argv)
    if args.command == "issue":
        env = os.environ
        repository, token = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_TOKEN")
        if not repository or not token:
            raise cli.UserError(
                "set GITHUB_REPOSITORY and GITHUB_TOKEN (the monitor workflow does)"
            )
        server, run = env.get("GITHUB_SERVER_URL", "https://github.com"), env.get("GITHUB_RUN_ID")
        link = f"{server}/{repository}/actions/runs/{run}"
        body = (
            f"{args.summary.read_text()}\nThe full report.html: an artifact of [the run]({link}).\n"
        )
        print(publish(env.get("GITHUB_API_URL", "https://api.github.com"), repository, token, body))
        return
    if args.command == "current":
        if not args.logs:
            raise cli.UserError("no LOGS: make current LOGS=<file or URL of the service's output>")
        print(f"{current(args.logs, args.out)} request records in {args.out}")
        return
    if not args.current.exists():
        raise cli.UserError(
            f"{args.current}: no such file; make current LOGS=... collects the service's requests"
        )
    params = load()
    features = contract.from_schema(args.schema.read_text(), params.data)
    now = read_table(args.current, params.data)
    contract.check_frame(now, features, accept_unseen=True)
    if "prediction" not in now:
        now = predict_frame(Predictor(features, args.model, None), now)
    reference = read_table(args.reference)
    snapshot = report(reference, now, features, params.drift)
    result = verdict(snapshot.dict())
    args.out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(args.out / "report.html"))
    evidently = (args.out / "report.html").read_text()
    (args.out / "report.html").write_text(page(evidently, result, len(now), params.drift))
    (args.out / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "summary.md").write_text(summary(result, len(now), params.drift))
    print((args.out / "summary.md").read_text().splitlines()[0])
    if result["drift"]:
        drifted = ", ".join(result["drifted"]) or "the missing values"
        raise cli.UserError(f"drift in {drifted}: see {args.out / 'summary.md'}")


if __name__ == "__main__":
    cli.run(main)
