"""Gate stage: thresholds, a margin over the baseline and a floor on the worst slice, each on the
task's own metrics (a regression's RMSE and MAE are better lower: the margin is a cut below), and
no slowdown against the champion."""

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from .. import cli, lineage
from ..metrics import (
    LOWER_IS_BETTER,
    REGRESSION_SLICE_SCORES,
    SLICE_SCORES,
    Latency,
    Metrics,
    Record,
    RegressionMetrics,
    read_metrics,
)
from ..params import GateParams, TaskGateParams, load


class Check(Record):
    check: str
    value: float
    passed: bool


class Verdict(Record):
    """reports/gate.json: every check, and whether all passed."""

    passed: bool
    checks: list[Check]


def checks(metrics: Metrics | RegressionMetrics, params: TaskGateParams) -> list[Check]:
    """Every check of the gate with its value, its limit and whether it passed."""
    scores, baseline = metrics.scores(), metrics.baseline.scores()
    results = [
        Check(check=f"{name} >= {limit}", value=scores[name], passed=scores[name] >= limit)
        for name, limit in params.min.items()
    ]
    results += [
        Check(check=f"{name} <= {limit}", value=scores[name], passed=scores[name] <= limit)
        for name, limit in params.max.items()
    ]
    value, theirs, margin = scores[params.metric], baseline[params.metric], params.baseline_margin
    if params.metric in LOWER_IS_BETTER:
        passed, check = value <= theirs - margin, f"<= baseline {theirs:.4g} - {margin}"
    else:
        passed, check = value >= theirs + margin, f">= baseline {theirs:.4g} + {margin}"
    results.append(Check(check=f"{params.metric} {check}", value=value, passed=passed))
    gated = {k: s for k, s in metrics.slices.items() if s.rows >= params.slice_min_rows}
    if gated:
        name, lower = params.slice_metric, params.slice_metric in LOWER_IS_BETTER
        pick = max if lower else min
        worst, values = pick(gated.items(), key=lambda kv: getattr(kv[1], name))
        value, limit = getattr(values, name), params.slice_floor
        results.append(
            Check(
                check=f"worst slice ({worst}) {name} {'<=' if lower else '>='} {limit}",
                value=value,
                passed=value <= limit if lower else value >= limit,
            )
        )
    return results


def uninformative(metrics: Metrics | RegressionMetrics) -> Check:
    """No feature may be no better than noise (evaluate's permutation importance)."""
    names = metrics.uninformative
    return Check(check="features no better than noise <= 0", value=len(names), passed=not names)


def verdict(metrics: Metrics | RegressionMetrics, gate: GateParams) -> Verdict:
    """The checks of the model's task and whether all passed; unknown metric names are a params
    mistake."""
    regression = isinstance(metrics, RegressionMetrics)
    params = gate.for_task("regression" if regression else "classification")
    known = set(metrics.scores())
    slice_scores = REGRESSION_SLICE_SCORES if regression else SLICE_SCORES
    unknown = sorted(
        ({*params.min, *params.max, params.metric} - known)
        | ({params.slice_metric} - set(slice_scores))
    )
    if unknown:
        raise cli.UserError(
            f"gate names unknown metrics {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    results = checks(metrics, params)
    if gate.fail_uninformative:
        results.append(uninformative(metrics))
    return Verdict(passed=all(r.passed for r in results), checks=results)


def slowdown(candidate: Latency, champion: Latency, limit: float) -> Check:
    """The model's predict time over its baseline's, against the champion's own ratio: each ratio
    comes from one run on one machine, so CI and a laptop compare fairly."""
    ratio = candidate.relative / champion.relative
    return Check(
        check=f"predict time / champion's <= {limit:g}", value=ratio, passed=ratio <= limit
    )


def champion_latency(revision: str, path: Path) -> Latency | None:
    """The champion's reports/latency.json, as committed; None for a first model (or an older
    record)."""
    text = lineage.committed(revision, path)
    try:
        return Latency.model_validate_json(text) if text else None
    except ValidationError:
        return None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="gate", description=__doc__)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--latency", type=Path, help="reports/latency.json, timed against the champion's"
    )
    args = parser.parse_args(argv)
    params = load().gate
    result = verdict(read_metrics(args.metrics), params)
    champion = champion_latency(params.champion, args.latency) if args.latency else None
    if args.latency and champion:
        check = slowdown(Latency.read(args.latency), champion, params.max_slowdown)
        result = Verdict(passed=result.passed and check.passed, checks=[*result.checks, check])
    failed = [f"{r.check} failed ({r.value:.4g})" for r in result.checks if not r.passed]
    if failed:
        raise cli.UserError("; ".join(failed))
    args.out.write_text(json.dumps(result.model_dump(), indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
