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


RUBRIC = Path(__file__).with_name("rubric.yaml")


def sections(rubric: Path = RUBRIC) -> dict[str, list[Item]]:
    """The rubric's items by section."""
    return {
        section: [
            Item(key, spec["title"], tuple(spec.get("checks", ())), spec.get("manual", ""))
            for key, spec in items.items()
        ]
        for section, items in yaml.safe_load(rubric.read_text()).items()
    }


SECTIONS = sections()


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
