"""PR report: the workspace's model, gate verdict, params, data and hashes against BASE."""

import argparse
import csv
import io
import json
import math
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from . import charts, cli, gate, params, render
from .params import Gate

# Every file compared is git-tracked (the pipeline's reports are `cache: false` outs), so plain
# `git show BASE:<path>` reads BASE offline in milliseconds. `dvc metrics diff` and `dvc params
# diff` read the same files, cost a second of start-up each and still leave the verdict to us.
PARAMS = "params.yaml"
LOCK = "dvc.lock"
METRICS = "reports/metrics.json"
TRAIN = "reports/train.json"
VALIDATION = "reports/validation.json"
CURVES = {"roc": ("fpr", "tpr"), "precision_recall": ("recall", "precision")}
# The hash table follows data and models: code shows in the PR's diff, reports in the tables.
NOT_ARTIFACTS = ("src/", "reports/")
ABSENT = "—"

Reader = Callable[[str], str | None]
Parser = Callable[[str], Any]
Json = dict[str, Any]


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def resolve(base: str) -> tuple[str, str]:
    """The name and commit of BASE; origin/BASE serves a fresh CI clone that has no local branch."""
    if git("rev-parse", "--git-dir").returncode != 0:
        raise cli.UserError("not a git repository: run the report inside the project's git clone")
    for name in (base, f"origin/{base}"):
        # `^{commit}`: a tag resolves to its commit, a tree or blob is refused.
        found = git("rev-parse", "--verify", "--quiet", name + "^{commit}")
        if found.returncode == 0:
            return name, found.stdout.strip()
    raise cli.UserError(
        f"BASE {base!r} is not a git revision here: run `git fetch origin {base}` "
        "(in CI, check out with fetch-depth: 0) or set BASE to a branch or commit"
    )


def at(commit: str) -> Reader:
    """Files as they are in a commit; None where the commit has no such file."""

    def read(path: str) -> str | None:
        # `./` makes the path relative to this folder, as on disk, even below the repository root.
        shown = git("show", f"{commit}:./{path}")
        return shown.stdout if shown.returncode == 0 else None

    return read


def on_disk(path: str) -> str | None:
    file = Path(path)
    return file.read_text() if file.is_file() else None


def dvc_files(commit: str | None) -> list[str]:
    """The .dvc files of a commit, or of the workspace (tracked or new) when commit is None."""
    if commit is None:
        listed = git("ls-files", "--cached", "--others", "--exclude-standard", "--", "*.dvc")
    else:
        listed = git("ls-tree", "-r", "--name-only", commit, "--", ".")
    return [p for p in listed.stdout.splitlines() if p.endswith(".dvc")]


def parser(read: Reader, where: str) -> Parser:
    """A reader of JSON and YAML files; None where there is no file, one line where it is broken."""

    def parse(path: str) -> Any:
        text = read(path)
        if text is None:
            return None
        kind = "JSON" if path.endswith(".json") else "YAML"
        try:
            return json.loads(text) if kind == "JSON" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError):
            raise cli.UserError(f"{path} in {where} is not valid {kind}") from None

    return parse


@dataclass
class Verdict:
    passed: bool | None  # None: no verdict, `note` says why
    checks: list[Json] = field(default_factory=list)
    note: str = ""


def judge(metrics: Json | None, gate_params: Gate | str) -> Verdict:
    """The project's own gate applied to one side's metrics with that side's gate params."""
    if metrics is None:
        return Verdict(None, note=f"no {METRICS}")
    if isinstance(gate_params, str):
        return Verdict(None, note=gate_params)
    try:
        result = gate.verdict(metrics, gate_params)
    except (cli.UserError, KeyError) as error:  # an older metrics format or a params mistake
        return Verdict(None, note=f"the gate does not apply to its metrics ({error})")
    return Verdict(result["passed"], result["checks"])


@dataclass
class Side:
    """One revision's reports, params and artifact hashes."""

    label: str
    metrics: Json | None
    train: Json | None
    validation: Json | None
    params: Json | None
    curves: dict[str, list[tuple[float, float]]]
    hashes: dict[str, str]
    inputs: set[str]  # the paths of `hashes` that no stage writes: raw data, the schema
    verdict: Verdict


def curve(text: str | None, x: str, y: str) -> list[tuple[float, float]]:
    if text is None:
        return []
    return [(float(row[x]), float(row[y])) for row in csv.DictReader(io.StringIO(text))]


def hashes(parse: Parser, dvc_paths: list[str]) -> tuple[dict[str, str], set[str]]:
    """md5 of each data and model path, inputs first, and which of them are inputs."""
    # A failed `dvc repro` leaves later stages' records stale, so a stage's out outranks a dep, and
    # the .dvc file of raw data (what the commit declares) outranks both.
    deps: dict[str, str] = {}
    outs: dict[str, str] = {}
    lock = parse(LOCK) or {}
    for stage in lock.get("stages", {}).values():
        for entry in stage.get("deps", []):
            deps.setdefault(entry["path"], entry.get("md5", ""))
        outs.update({entry["path"]: entry.get("md5", "") for entry in stage.get("outs", [])})
    declared: dict[str, str] = {}
    for path in dvc_paths:
        folder = PurePosixPath(path).parent
        for out in (parse(path) or {}).get("outs", []):
            declared[str(folder / out["path"])] = out.get("md5", "")
    found = {**deps, **outs, **declared}
    folders = [p for p, md5 in found.items() if md5.endswith(".dir")]
    kept = [
        p
        for p, md5 in found.items()
        if md5
        and not p.startswith(NOT_ARTIFACTS)
        and not any(p.startswith(f"{folder}/") for folder in folders)  # its folder's hash covers it
    ]
    inputs = {p for p in kept if p in declared or p not in outs}
    ordered = sorted(kept, key=lambda p: p not in inputs)  # stable: pipeline order within each
    return {p: found[p].removesuffix(".dir") for p in ordered}, inputs


def load(
    label: str, read: Reader, where: str, dvc_paths: list[str], gate_params: Gate | None
) -> Side:
    """One side; gate_params None takes the gate section of that side's own params.yaml."""
    parse = parser(read, where)
    raw = parse(PARAMS)
    verdict_gate: Gate | str
    try:
        # Only the gate section: an older params.yaml may lack sections added since.
        verdict_gate = gate_params or Gate.model_validate((raw or {})["gate"])
    except (KeyError, TypeError):
        verdict_gate = f"no gate section in {PARAMS}"
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        verdict_gate = f"{PARAMS}: gate.{key}: {first['msg']}"
    metrics = parse(METRICS)
    plots = {n: read(f"reports/plots/{n}.csv") for n in CURVES}
    artifacts, inputs = hashes(parse, dvc_paths)
    return Side(
        label=label,
        metrics=metrics,
        train=parse(TRAIN),
        validation=parse(VALIDATION),
        params=raw,
        curves={n: curve(plots[n], x, y) for n, (x, y) in CURVES.items()},
        hashes=artifacts,
        inputs=inputs,
        verdict=judge(metrics, verdict_gate),
    )


def flat(values: Json, prefix: str = "") -> dict[str, str]:
    """Nested params as `section.key` names with their YAML-like values."""
    result: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            result.update(flat(value, f"{prefix}{key}."))
        else:
            result[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return result


def union(*keys: Iterable[str]) -> list[str]:
    """Keys in order of first appearance."""
    return list(dict.fromkeys(k for group in keys for k in group))


def scalars(metrics: Json | None) -> Json:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)}


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


def change(old: Any, new: Any) -> str:
    if not isinstance(old, int | float) or not isinstance(new, int | float):
        return ""
    return f"{new - old:+.4f}"


def failures(verdict: Verdict) -> str:
    return ", ".join(f"{c['check']} ({c['value']:.4g})" for c in verdict.checks if not c["passed"])


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
    old, new = scalars(champion.metrics), scalars(challenger.metrics)
    baseline = scalars((challenger.metrics or champion.metrics or {}).get("baseline"))
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


def gate_section(champion: Side, challenger: Side) -> list[str]:
    """Each side's checks under its own gate params, joined by the check's text."""
    mark = {True: "✅", False: "❌"}
    old, new = (
        {c["check"]: f"{mark[c['passed']]} {c['value']:.4g}" for c in side.verdict.checks}
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


def slices_section(champion: Side, challenger: Side, gate_params: Gate) -> list[str]:
    old = (champion.metrics or {}).get("slices", {})
    new = (challenger.metrics or {}).get("slices", {})
    same_slicing = (champion.params or {}).get("evaluate", {}).get("slice") == (
        challenger.params or {}
    ).get("evaluate", {}).get("slice")
    if same_slicing and old and len(old) == len(new) and not set(old) & set(new):
        # Quantile bins move with the data: the i-th bin on each side is the same slice.
        pairs = [(f"{a} → {b}", old[a], new[b]) for a, b in zip(old, new, strict=True)]
    else:
        pairs = [(name, old.get(name, {}), new.get(name, {})) for name in union(new, old)]
    rows = []
    for name, a, b in pairs:
        small = (b or a).get("rows", 0) < gate_params.slice_min_rows
        label = f"{name} (not gated)" if small else name
        rows.append([label, *(pair(a.get(k), b.get(k)) for k in ("rows", "accuracy", "f1"))])
    if not rows:
        return []
    headers = ["slice", "rows", "accuracy", "f1"]
    title = f"### Slices (`{champion.label}` → {challenger.label})\n"
    return [title, render.table(headers, rows)]


def classes_section(champion: Side, challenger: Side) -> list[str]:
    old = (champion.metrics or {}).get("per_class", {})
    new = (challenger.metrics or {}).get("per_class", {})
    keys = ("precision", "recall", "f1", "support")
    rows = [
        [name, *(pair(old.get(name, {}).get(k), new.get(name, {}).get(k)) for k in keys)]
        for name in union(new, old)
    ]
    if not rows:
        return []
    headers = ["class", *keys]
    title = f"### Per class (`{champion.label}` → {challenger.label})\n"
    return [title, render.table(headers, rows)]


def validation_rows(v: Json | None) -> dict[str, Any]:
    if v is None:
        return {}
    missing = v.get("missing", {})
    rows: dict[str, Any] = {
        "rows": v.get("rows"),
        "columns": v.get("columns"),
        "schema checks": v.get("checks"),
        "missing values": sum(missing.values()),
        "columns with missing values": ", ".join(missing) or "none",
    }
    rows.update({f"class {k}": n for k, n in v.get("classes", {}).items()})
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
    train, p = side.train, (side.params or {}).get("train", {})
    if train is None:
        return {}
    search = p.get("search", {})
    return {
        "estimator": f"`{p.get('estimator', '?')}`",
        "search": f"{search.get('kind', '?')}, {search.get('cv_folds', '?')}-fold CV",
        f"CV {train.get('scoring', 'score')}": f"{train.get('score', math.nan):.4f} ± "
        f"{train.get('std', math.nan):.4f}",
        "chosen arguments": f"`{json.dumps(train.get('best_params'))}`",
        "fixed arguments": f"`{json.dumps(p.get('fixed', {}))}`",
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


def plot_metrics(champion: Side, challenger: Side, path: Path) -> bool:
    """Bars of each test-set metric, champion beside challenger."""
    old, new = scalars(champion.metrics), scalars(challenger.metrics)
    names = union(new, old)
    if not names:
        return False
    fig, ax = render.figure(max(6.0, 1.1 * len(names)), 3.5)
    for offset, side, values in ((-0.2, champion.label, old), (0.2, challenger.label, new)):
        heights = [values.get(n, math.nan) for n in names]
        bars = ax.bar([i + offset for i in range(len(names))], heights, width=0.4, label=side)
        labels = ["" if math.isnan(h) else f"{h:.3f}" for h in heights]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(names)), names)
    ax.set(title="test-set metrics: champion and challenger")
    ax.margins(y=0.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    render.save(fig, path)
    return True


def plot_curve(name: str, champion: Side, challenger: Side, path: Path) -> bool:
    """One curve of each side on the same axes."""
    if not champion.curves[name] and not challenger.curves[name]:
        return False
    x, y = CURVES[name]
    fig, ax = render.figure(4.5, 4)
    for side, style in ((champion, "--"), (challenger, "-")):
        if side.curves[name]:
            xs, ys = zip(*side.curves[name], strict=True)
            auc = (side.metrics or {}).get("roc_auc") if name == "roc" else None
            label = side.label if auc is None else f"{side.label}, AUC {auc:.4f}"
            ax.plot(xs, ys, linestyle=style, label=label)
    if name == "roc":
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel=x, ylabel=y, title=name.replace("_", " "), xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right" if name == "roc" else "lower left")
    render.save(fig, path)
    return True


def plots(champion: Side, challenger: Side, out: Path) -> list[str]:
    """Mermaid charts, which GitHub draws in the comment, and the same plots as PNG files."""
    drawn = {"metrics": plot_metrics(champion, challenger, out / "metrics.png")}
    drawn |= {n: plot_curve(n, champion, challenger, out / f"{n}.png") for n in CURVES}
    for name, done in drawn.items():
        if not done:  # no stale picture from an earlier run
            (out / f"{name}.png").unlink(missing_ok=True)
    mermaid = charts.drawings(
        scalars(champion.metrics),
        scalars(challenger.metrics),
        champion.curves,
        challenger.curves,
        champion.label,
    )
    pngs = ", ".join(f"`{n}.png`" for n, done in drawn.items() if done)
    if not pngs:
        return []
    note = f"The same plots as PNG: {pngs}, beside this report (in CI, the run's artifact).\n"
    return ["### Plots\n", *mermaid, note]


def report(base: str, out: Path) -> str:
    """Write the markdown and PNGs comparing the workspace with BASE; return the markdown."""
    name, commit = resolve(base)
    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "no commit"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    gate_params = params.load(Path(PARAMS)).gate
    champion = load(name, at(commit), f"`{name}`", dvc_files(commit), None)
    challenger = load("workspace", on_disk, "the workspace", dvc_files(None), gate_params)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"## Model report: workspace vs `{name}`\n",
        headline(champion, challenger) + "\n",
        f"Champion `{name}` ({commit[:7]}); challenger: the workspace ({head}"
        f"{' with uncommitted changes' if dirty else ''}), which changes "
        f"{summary(champion, challenger)}.\n",
        *metrics_section(champion, challenger),
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
