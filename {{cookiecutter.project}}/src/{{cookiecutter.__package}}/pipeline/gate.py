"""Gate stage: thresholds, a margin over the baseline and a floor on the worst slice."""

import argparse
import json
from pathlib import Path
from typing import Any

from .. import cli, params
from ..params import Gate


def checks(metrics: dict[str, Any], gate: Gate) -> list[dict[str, Any]]:
    """Every check of the gate with its value, its limit and whether it passed."""
    results = []
    for name, limit in gate.min.items():
        results.append(
            {
                "check": f"{name} >= {limit}",
                "value": metrics[name],
                "passed": metrics[name] >= limit,
            }
        )
    for name, limit in gate.max.items():
        results.append(
            {
                "check": f"{name} <= {limit}",
                "value": metrics[name],
                "passed": metrics[name] <= limit,
            }
        )
    baseline = metrics["baseline"][gate.metric]
    results.append(
        {
            "check": f"{gate.metric} >= baseline {baseline:.4g} + {gate.baseline_margin}",
            "value": metrics[gate.metric],
            "passed": metrics[gate.metric] >= baseline + gate.baseline_margin,
        }
    )
    gated = {k: s for k, s in metrics["slices"].items() if s["rows"] >= gate.slice_min_rows}
    if gated:
        worst, values = min(gated.items(), key=lambda kv: kv[1][gate.slice_metric])
        value = values[gate.slice_metric]
        results.append(
            {
                "check": f"worst slice ({worst}) {gate.slice_metric} >= {gate.slice_floor}",
                "value": value,
                "passed": value >= gate.slice_floor,
            }
        )
    return results


def verdict(metrics: dict[str, Any], gate: Gate) -> dict[str, Any]:
    """The checks and whether all passed; unknown metric names are a params mistake."""
    known = set(metrics) - {"baseline", "per_class", "slices"}
    unknown = sorted(
        ({*gate.min, *gate.max, gate.metric} - known) | ({gate.slice_metric} - {"accuracy", "f1"})
    )
    if unknown:
        raise cli.UserError(
            f"gate names unknown metrics {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    results = checks(metrics, gate)
    return {"passed": all(r["passed"] for r in results), "checks": results}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="gate", description=__doc__)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    result = verdict(json.loads(args.metrics.read_text()), params.load().gate)
    failed = [
        f"{r['check']} failed ({r['value']:.4g})" for r in result["checks"] if not r["passed"]
    ]
    if failed:
        raise cli.UserError("; ".join(failed))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
