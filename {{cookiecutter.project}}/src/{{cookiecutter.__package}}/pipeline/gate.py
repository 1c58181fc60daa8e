"""Gate stage: thresholds, a margin over the baseline and a floor on the worst slice, each on the
task's own metrics (a regression's RMSE and MAE are better lower: the margin is a cut below)."""

import json

from .. import cli
from ..metrics import (
    LOWER_IS_BETTER,
    REGRESSION_SLICE_SCORES,
    SLICE_SCORES,
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
    return Verdict(passed=all(r.passed for r in results), checks=results)


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "metrics", "out")
    result = verdict(read_metrics(args.metrics), load().gate)
    failed = [f"{r.check} failed ({r.value:.4g})" for r in result.checks if not r.passed]
    if failed:
        raise cli.UserError("; ".join(failed))
    args.out.write_text(json.dumps(result.model_dump(), indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
