"""`make report`: the PR report of the workspace (challenger) against BASE (champion)."""

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import cli, render
from ..metrics import (
    DataSummary,
    RegressionMetrics,
    RegressionSliceScores,
    SliceScores,
    Staleness,
)
from ..params import GateParams, flatten, load
from .plots import plots
from .revisions import (
    METRICS,
    PARAMS,
    STALENESS,
    VALIDATION,
    Json,
    Side,
    Verdict,
    at,
    dvc_files,
    git,
    on_disk,
    resolve,
    timed,
    union,
)
from .revisions import load as load_side

ABSENT = "—"


def flat(values: Json) -> dict[str, str]:
    """Nested params as `section.key` names with their YAML-like values."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flatten(values).items()}


def show(value: Any) -> str:
    return ABSENT if value is None else render.cell(value)


def pair(old: Any, new: Any) -> str:
    """Both sides in one cell: the value once when equal, else `old → new`."""
    before, after = show(old), show(new)
    return after if before == after else f"{before} → {after}"


def columns(first: str, champion: Side, challenger: Side, old: Json, new: Json) -> str:
    """A table with a row per key of either side: the champion's value, then the challenger's."""
    rows = [(key, show(old.get(key)), show(new.get(key))) for key in union(new, old)]
    return render.table([first, f"`{champion.label}`", challenger.label], rows)


def value(record: BaseModel | None, name: str) -> Any:
    """A field of a record that one side may lack."""
    return None if record is None else getattr(record, name)


def change(old: Any, new: Any) -> str:
    if not isinstance(old, int | float) or not isinstance(new, int | float):
        return ""
    return f"{new - old:+.4f}"


def failures(verdict: Verdict) -> str:
    return ", ".join(f"{c.check} ({c.value:.4g})" for c in verdict.checks if not c.passed)


def headline(champion: Side, challenger: Side) -> str:
    """The verdict line: the challenger's gate result, then the champion's under its own params."""
    mine, theirs = challenger.verdict, champion.verdict
    if mine.passed:
        line = f"✅ **The challenger passes the gate** ({len(mine.checks)} checks)"
    elif mine.passed is False:
        line = f"❌ **The challenger fails the gate**: {failures(mine)}"
    else:
        line = f"⚠️ **No gate verdict for the challenger**: {mine.note}"
        line += " (run `make train`)" if challenger.metrics is None else ""
    if theirs.passed:
        return f"{line}; the champion `{champion.label}` passes its own gate."
    if theirs.passed is False:
        return f"{line}; the champion `{champion.label}` fails its own: {failures(theirs)}."
    return f"{line}; the champion `{champion.label}` has no verdict: {theirs.note}."


def changed_params(champion: Side, challenger: Side) -> tuple[Json, Json]:
    """The params whose values differ, on each side."""
    old, new = flat(champion.params or {}), flat(challenger.params or {})
    keys = [key for key in union(new, old) if old.get(key) != new.get(key)]
    return {k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new}


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def summary(champion: Side, challenger: Side) -> str:
    """What changed, in a few words: params, inputs by name, and how many files derive from them."""
    parts = []
    if champion.params is not None and (n := len(union(*changed_params(champion, challenger)))):
        parts.append(plural(n, "param"))
    old, new = champion.hashes, challenger.hashes
    changed = [p for p in union(new, old) if old.get(p) != new.get(p)]
    inputs = champion.inputs | challenger.inputs
    parts += [f"`{p}`" for p in changed if p in inputs]
    if derived := sum(p not in inputs for p in changed):
        parts.append(plural(derived, "derived data and model file"))
    if not parts:
        return "no params, data or models"
    return " and ".join([", ".join(parts[:-1]), parts[-1]]) if len(parts) > 1 else parts[0]


def metrics_section(champion: Side, challenger: Side) -> list[str]:
    old, new = champion.scores(), challenger.scores()
    either = challenger.metrics or champion.metrics
    baseline = either.baseline.scores() if either else {}
    rows = [
        (
            name,
            show(old.get(name)),
            show(new.get(name)),
            change(old.get(name), new.get(name)),
            show(baseline.get(name)),
        )
        for name in union(new, old)
    ]
    lines = ["### Champion vs challenger\n"]
    if champion.metrics is None:
        lines.append(f"`{champion.label}` has no {METRICS}: nothing to compare with yet.\n")
    if not rows:
        return [*lines, f"No {METRICS} on either side: run `make train`.\n"]
    headers = ["metric", f"champion `{champion.label}`", "challenger", "change", "baseline"]
    return [*lines, render.table(headers, rows)]


def staleness_section(path: Path) -> list[str]:
    """The champion scored by evaluate on the challenger's test set: what keeping the current
    model on today's data would cost, beside the change the table above shows across test sets."""
    if not path.is_file():
        return []
    stale = Staleness.read(path)
    lines = [f"### Staleness: `{stale.champion}`'s model on the challenger's test set\n"]
    if stale.note:
        return [*lines, f"Not measured: {stale.note}.\n"]
    rows = [
        (name, show(value), show(value + stale.gap[name]), f"{stale.gap[name]:+.4f}")
        for name, value in stale.champion_scores.items()
        if name in stale.gap
    ]
    headers = ["metric", "current model", "retrained (challenger)", "gap"]
    return [*lines, render.table(headers, rows)]


def gate_section(champion: Side, challenger: Side) -> list[str]:
    """Each side's checks under its own gate params, joined by the check's text."""
    mark = {True: "✅", False: "❌"}
    old, new = (
        {c.check: f"{mark[c.passed]} {c.value:.4g}" for c in side.verdict.checks}
        for side in (champion, challenger)
    )
    if not old and not new:
        return []
    return ["### Gate\n", columns("check", champion, challenger, old, new)]


def params_section(champion: Side, challenger: Side) -> list[str]:
    lines = ["### Params\n"]
    if champion.params is None:
        return [*lines, f"`{champion.label}` has no {PARAMS}.\n"]
    old, new = changed_params(champion, challenger)
    if not old and not new:
        return [*lines, "No params changed.\n"]
    return [*lines, columns("param", champion, challenger, old, new)]


def hashes_section(champion: Side, challenger: Side) -> list[str]:
    """The data and model files whose md5 changed; the unchanged ones by name."""
    old, new = champion.hashes, challenger.hashes
    paths = union(new, old)
    if not paths:
        return []
    changed = [p for p in paths if old.get(p) != new.get(p)]
    lines = ["### Data and models\n"]
    if changed:
        before, after = (
            {f"`{p}`": side[p][:8] for p in changed if p in side} for side in (old, new)
        )
        lines.append(columns("changed (md5)", champion, challenger, before, after))
    if same := ", ".join(f"`{p}`" for p in paths if p not in changed):
        lines.append(f"Unchanged: {same}.\n")
    return lines


def slices_section(champion: Side, challenger: Side, gate_params: GateParams) -> list[str]:
    old = champion.metrics.slices if champion.metrics else {}
    new = challenger.metrics.slices if challenger.metrics else {}
    same_slicing = (champion.params or {}).get("evaluate", {}).get("slice") == (
        challenger.params or {}
    ).get("evaluate", {}).get("slice")
    Scores = SliceScores | RegressionSliceScores
    pairs: list[tuple[str, Scores | None, Scores | None]]
    if same_slicing and old and len(old) == len(new) and not set(old) & set(new):
        # Quantile bins move with the data: the i-th bin on each side is the same slice.
        pairs = [(f"{a} → {b}", old[a], new[b]) for a, b in zip(old, new, strict=True)]
    else:
        pairs = [(name, old.get(name), new.get(name)) for name in union(new, old)]
    regression = isinstance(challenger.metrics or champion.metrics, RegressionMetrics)
    keys = ("rows", "rmse", "mae", "r2") if regression else ("rows", "accuracy", "f1")
    min_rows = gate_params.for_task("regression" if regression else "classification").slice_min_rows
    rows = []
    for name, a, b in pairs:
        small = max(s.rows for s in (a, b) if s) < min_rows
        label = f"{name} (not gated)" if small else name
        rows.append([label, *(pair(getattr(a, k, None), getattr(b, k, None)) for k in keys)])
    if not rows:
        return []
    headers = ["slice", *keys]
    title = f"### Slices (`{champion.label}` → {challenger.label})\n"
    return [title, render.table(headers, rows)]


def classes_section(champion: Side, challenger: Side) -> list[str]:
    old = getattr(champion.metrics, "per_class", {})  # a regression has no classes
    new = getattr(challenger.metrics, "per_class", {})
    keys = ("precision", "recall", "f1", "support")
    rows = [
        [name, *(pair(value(old.get(name), k), value(new.get(name), k)) for k in keys)]
        for name in union(new, old)
    ]
    if not rows:
        return []
    headers = ["class", *keys]
    title = f"### Per class (`{champion.label}` → {challenger.label})\n"
    return [title, render.table(headers, rows)]


def validation_rows(summary: DataSummary | None) -> dict[str, Any]:
    if summary is None:
        return {}
    rows: dict[str, Any] = {
        "rows": summary.rows,
        "columns": summary.columns,
        "schema checks": summary.checks,
        "missing values": sum(summary.missing.values()),
        "columns with missing values": ", ".join(summary.missing) or "none",
    }
    rows.update({f"class {k}": n for k, n in summary.classes.items()})
    if summary.unlabelled:
        rows["rows without a target (dropped)"] = summary.unlabelled
    return rows


def validation_section(champion: Side, challenger: Side) -> list[str]:
    old, new = validation_rows(champion.validation), validation_rows(challenger.validation)
    lines = ["### Data validation\n"]
    if challenger.validation is None:
        lines.append(
            f"No {VALIDATION} in the workspace: the validate stage failed or did not run.\n"
        )
    if not old and not new:
        return lines
    return [*lines, columns("", champion, challenger, old, new)]


def model_rows(side: Side) -> dict[str, str]:
    cv, train = side.train, (side.params or {}).get("train", {})
    if cv is None:
        return {}
    search = train.get("search", {})
    if isinstance(side.metrics, RegressionMetrics):  # its choices are the `regression` block's
        train = {**train, **train.get("regression", {})}
    return {
        "estimator": f"`{train.get('estimator', '?')}`",
        "search": f"{search.get('kind', '?')}, {search.get('cv_folds', '?')}-fold CV",
        f"CV {cv.scoring}": f"{cv.score:.4f} ± {cv.std:.4f}",
        "chosen arguments": f"`{json.dumps(cv.best_params, default=str)}`",
        "fixed arguments": f"`{json.dumps(train.get('fixed', {}))}`",
    }


def model_section(champion: Side, challenger: Side) -> list[str]:
    old, new = model_rows(champion), model_rows(challenger)
    if not old and not new:
        return []
    return [
        "### Model card summary\n",
        columns("", champion, challenger, old, new),
        "The full card of the challenger is `reports/model_card.md`.\n",
    ]


def report(base: str, out: Path) -> str:
    """Write the markdown and PNGs comparing the workspace with BASE; return the markdown."""
    name, commit = resolve(base)
    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "no commit"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    gate_params = load(Path(PARAMS)).gate
    champion = load_side(name, at(commit), f"`{name}`", dvc_files(commit), None)
    challenger = load_side("workspace", on_disk, "the workspace", dvc_files(None), gate_params)
    challenger = timed(challenger, at(commit), gate_params)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## Model report: workspace vs `{name}`\n",
        headline(champion, challenger) + "\n",
        f"Champion `{name}` ({commit[:7]}); challenger: the workspace ({head}"
        f"{' with uncommitted changes' if dirty else ''}), which changes "
        f"{summary(champion, challenger)}.\n",
        *metrics_section(champion, challenger),
        *staleness_section(Path(STALENESS)),
        *gate_section(champion, challenger),
        *params_section(champion, challenger),
        *hashes_section(champion, challenger),
        *slices_section(champion, challenger, gate_params),
        *classes_section(champion, challenger),
        *validation_section(champion, challenger),
        *model_section(champion, challenger),
        *plots(champion, challenger, out),
    ]
    markdown = "\n".join(lines)
    (out / "report.md").write_text(markdown)
    return markdown


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="report", description=__doc__)
    parser.add_argument("--base", default="main", help="the git revision of the champion")
    parser.add_argument("--out", type=Path, default=Path("reports/pr"))
    args = parser.parse_args(argv)
    report(args.base, args.out)
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    cli.run(main)
