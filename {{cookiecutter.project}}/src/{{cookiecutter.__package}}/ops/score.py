"""`make score`: the ML Test Score (Breck et al., 2017) of this project, from what it automates.

Each of the rubric's 28 tests names the checks that automate it here: tests marked
`@pytest.mark.score("<item>")`, pipeline stages, workflow steps, alert rules or files. An item
scores 1 when every named check exists; the items a team must judge stay at 0, with the reason.
A section's score is the sum of its items; the final score is the lowest section's.
"""

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import cli


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    checks: tuple[str, ...] = ()
    manual: str = ""  # why no check can automate it


SECTIONS = {
    "data": [
        Item("D1", "Feature expectations are captured in a schema", ("test:D1", "stage:validate")),
        Item("D2", "All features are beneficial", ("test:D2", "stage:evaluate")),
        Item(
            "D3",
            "No feature's cost is too much",
            manual="a feature's cost (latency, memory, upkeep) "
            "against its benefit is a judgement; make loadtest measures the whole model's cost",
        ),
        Item("D4", "Features adhere to meta-level requirements", ("test:D4",)),
        Item(
            "D5",
            "The data pipeline has appropriate privacy controls",
            manual="who may use which "
            "data is governance; CI reaches the DVC remote only through short-lived OIDC roles",
        ),
        Item("D6", "New features can be added quickly", ("test:D6",)),
        Item("D7", "All input feature code is tested", ("test:D7",)),
    ],
    "model": [
        Item(
            "M1",
            "Model specs are reviewed and submitted",
            ("workflow:train.yml:make report", "file:.github/workflows/train.yml"),
        ),
        Item(
            "M2",
            "Offline and online metrics correlate",
            manual="online metrics need the labels "
            "of served requests, which arrive (if ever) outside this repository",
        ),
        Item("M3", "All hyperparameters have been tuned", ("test:M3", "stage:train")),
        Item(
            "M4",
            "The impact of model staleness is known",
            manual="measuring it needs time-stamped "
            "data; drift is watched (make drift) and retraining is scheduled",
        ),
        Item("M5", "A simpler model is not better", ("test:M5", "stage:gate")),
        Item(
            "M6", "Model quality is sufficient on important data slices", ("test:M6", "stage:gate")
        ),
        Item(
            "M7", "The model is tested for considerations of inclusion", ("test:M7", "stage:gate")
        ),
    ],
    "infrastructure": [
        Item("I1", "Training is reproducible", ("test:I1",)),
        Item("I2", "Model specs are unit tested", ("test:I2",)),
        Item("I3", "The ML pipeline is integration tested", ("test:I3",)),
        Item(
            "I4",
            "Model quality is validated before serving",
            ("stage:gate", "workflow:train.yml:make train"),
        ),
        Item("I5", "The model is debuggable", ("test:I5",)),
        Item(
            "I6",
            "Models are canaried before serving",
            (
                "file:deploy/overlays/staging/kustomization.yaml",
                "workflow:promote.yml:make promote",
            ),
        ),
        Item("I7", "Serving models can be rolled back", ("test:I7",)),
    ],
    "monitoring": [
        Item("Mon1", "Dependency changes result in notification", ("file:.github/dependabot.yml",)),
        Item("Mon2", "Data invariants hold for inputs", ("test:Mon2", "stage:validate")),
        Item("Mon3", "Training and serving are not skewed", ("test:Mon3",)),
        Item("Mon4", "Models are not too stale", ("workflow:retrain.yml:make train",)),
        Item("Mon5", "Models are numerically stable", ("test:Mon5",)),
        Item(
            "Mon6",
            "Computing performance has not regressed",
            ("test:Mon6", "alert:ServiceLatencyAboveSLO"),
        ),
        Item(
            "Mon7", "Prediction quality has not regressed", ("test:Mon7", "alert:ModelFeatureDrift")
        ),
    ],
}


def present(root: Path, check: str) -> bool:
    """Whether the project holds this check."""
    kind, _, what = check.partition(":")
    if kind == "test":
        marker = re.compile(rf"^\s*@pytest\.mark\.score\(\"{re.escape(what)}\"\)", re.MULTILINE)
        return any(marker.search(p.read_text()) for p in (root / "tests").rglob("test_*.py"))
    if kind == "stage":
        return what in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    if kind == "workflow":
        name, _, command = what.partition(":")
        path = root / ".github/workflows" / name
        return path.is_file() and command in path.read_text()
    if kind == "alert":
        return f"alert: {what}" in (root / "deploy/base/prometheusrule.yaml").read_text()
    if kind == "file":
        return (root / what).is_file()
    raise ValueError(f"unknown kind of check {check!r}")


def score(root: Path) -> dict[str, list[tuple[Item, int, list[str]]]]:
    """Per section: each item, its points, and its missing checks."""
    result = {}
    for section, items in SECTIONS.items():
        rows = []
        for item in items:
            missing = [c for c in item.checks if not present(root, c)]
            rows.append((item, int(bool(item.checks) and not missing), missing))
        result[section] = rows
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="score", description=__doc__)
    parser.add_argument("--minimum", type=int, default=0, help="fail below this final score")
    args = parser.parse_args(argv)
    result = score(Path())
    sums = {section: sum(points for _, points, _ in rows) for section, rows in result.items()}
    for section, rows in result.items():
        print(f"{section}: {sums[section]} of {len(rows)}")
        for item, points, missing in rows:
            why = item.manual or (
                f"missing {', '.join(missing)}" if missing else ", ".join(item.checks)
            )
            print(f"  {item.id:5} {points}  {item.title} ({why})")
    final = min(sums.values())
    print(f"ML Test Score: {final} (the lowest section)")
    if final < args.minimum:
        raise cli.UserError(f"ML Test Score {final} is below {args.minimum}")


if __name__ == "__main__":
    cli.run(main)
