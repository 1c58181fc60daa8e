"""Gate stage: thresholds, a margin over the baseline and a floor on the worst slice."""

import json

from .. import cli
from ..metrics import SLICE_SCORES, Metrics, Record
from ..params import GateParams, load


class Check(Record):
    check: str
    value: float
    passed: bool


class Verdict(Record):
    """reports/gate.json: every check, and whether all passed."""

    passed: bool
    checks: list[Check]


def checks(metrics: Metrics, params: GateParams) -> list[Check]:
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
    value, floor = scores[params.metric], baseline[params.metric] + params.baseline_margin
    results.append(
        Check(
            check=f"{params.metric} >= baseline {baseline[params.metric]:.4g} + "
            f"{params.baseline_margin}",
            value=value,
            passed=value >= floor,
        )
    )
    gated = {k: s for k, s in metrics.slices.items() if s.rows >= params.slice_min_rows}
    if gated:
        worst, values = min(gated.items(), key=lambda kv: getattr(kv[1], params.slice_metric))
        value = getattr(values, params.slice_metric)
        results.append(
            Check(
                check=f"worst slice ({worst}) {params.slice_metric} >= {params.slice_floor}",
                value=value,
                passed=value >= params.slice_floor,
            )
        )
    if params.fail_uninformative:
        results.append(uninformative(metrics))
    return results


def uninformative(metrics: Metrics) -> Check:
    """No feature may be no better than noise (evaluate's permutation importance)."""
    names = metrics.uninformative
    return Check(check="features no better than noise <= 0", value=len(names), passed=not names)


def verdict(metrics: Metrics, params: GateParams) -> Verdict:
    """The checks and whether all passed; unknown metric names are a params mistake."""
    known = set(metrics.scores())
    unknown = sorted(
        ({*params.min, *params.max, params.metric} - known)
        | ({params.slice_metric} - set(SLICE_SCORES))
    )
    if unknown:
        raise cli.UserError(
            f"gate names unknown metrics {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    results = checks(metrics, params)
    return Verdict(passed=all(r.passed for r in results), checks=results)


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "metrics", "out")
    result = verdict(Metrics.read(args.metrics), load().gate)
    failed = [f"{r.check} failed ({r.value:.4g})" for r in result.checks if not r.passed]
    if failed:
        raise cli.UserError("; ".join(failed))
    args.out.write_text(json.dumps(result.model_dump(), indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
