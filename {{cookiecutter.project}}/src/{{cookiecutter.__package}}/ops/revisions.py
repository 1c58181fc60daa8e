"""One revision's results, from git or the workspace: reports, params, gate verdict, hashes."""

import csv
import io
import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .. import cli
from ..metrics import CrossValidation, DataSummary, Latency, Metrics, RegressionMetrics
from ..params import GateParams
from ..pipeline import gate

R = TypeVar("R", bound=BaseModel)

# Every file compared is git-tracked (the pipeline's reports are `cache: false` outs), so plain
# `git show BASE:<path>` reads BASE offline in milliseconds. `dvc metrics diff` and `dvc params
# diff` read the same files, cost a second of start-up each and still leave the verdict to us.
PARAMS = "params.yaml"
LOCK = "dvc.lock"
METRICS = "reports/metrics.json"
LATENCY = "reports/latency.json"
STALENESS = "reports/staleness.json"
TRAIN = "reports/train.json"
VALIDATION = "reports/validation.json"
CURVES = {"roc": ("fpr", "tpr"), "precision_recall": ("recall", "precision")}
# The hash table follows data and models: code shows in the PR's diff, reports in the tables.
NOT_ARTIFACTS = ("src/", "reports/")

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
    checks: list[gate.Check] = field(default_factory=list)
    note: str = ""


def judge(metrics: Metrics | RegressionMetrics | str, params: GateParams | str) -> Verdict:
    """The project's own gate applied to one side's metrics with that side's gate params; a
    string in place of either says why there are none."""
    if isinstance(metrics, str):
        return Verdict(None, note=metrics)
    if isinstance(params, str):
        return Verdict(None, note=params)
    try:
        result = gate.verdict(metrics, params)
    except cli.UserError as error:  # a params mistake, or metrics the gate does not know
        return Verdict(None, note=f"the gate does not apply to its metrics ({error})")
    return Verdict(result.passed, result.checks)


def typed(kind: type[R], value: Any) -> R | str:
    """A file's content as its record, or why it is not one (absent, or of another format)."""
    if value is None:
        return "absent"
    try:
        return kind.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top)"
        return f"{key}: {first['msg']}"


@dataclass
class Side:
    """One revision's reports, params and artifact hashes."""

    label: str
    metrics: Metrics | RegressionMetrics | None
    train: CrossValidation | None
    validation: DataSummary | None
    params: Json | None
    curves: dict[str, list[tuple[float, float]]]
    hashes: dict[str, str]
    inputs: set[str]  # the paths of `hashes` that no stage writes: raw data, the schema
    verdict: Verdict

    def scores(self) -> dict[str, float]:
        return self.metrics.scores() if self.metrics else {}


def union(*keys: Iterable[str]) -> list[str]:
    """Keys in order of first appearance."""
    return list(dict.fromkeys(k for group in keys for k in group))


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
    label: str, read: Reader, where: str, dvc_paths: list[str], gate_params: GateParams | None
) -> Side:
    """One side; gate_params None takes the gate section of that side's own params.yaml."""
    parse = parser(read, where)
    raw = parse(PARAMS)
    verdict_gate: GateParams | str
    try:
        # Only the gate section: an older params.yaml may lack sections added since.
        verdict_gate = gate_params or GateParams.model_validate((raw or {})["gate"])
    except (KeyError, TypeError):
        verdict_gate = f"no gate section in {PARAMS}"
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        verdict_gate = f"{PARAMS}: gate.{key}: {first['msg']}"
    found = parse(METRICS)
    regression = isinstance(found, dict) and found.get("task") == "regression"
    metrics: Metrics | RegressionMetrics | str = (
        typed(RegressionMetrics, found) if regression else typed(Metrics, found)
    )
    train, validation = typed(CrossValidation, parse(TRAIN)), typed(DataSummary, parse(VALIDATION))
    if isinstance(metrics, str) and metrics != "absent":
        metrics = f"{METRICS} is of another format ({metrics})"
    plots = {n: read(f"reports/plots/{n}.csv") for n in CURVES}
    artifacts, inputs = hashes(parse, dvc_paths)
    return Side(
        label=label,
        metrics=None if isinstance(metrics, str) else metrics,
        train=None if isinstance(train, str) else train,
        validation=None if isinstance(validation, str) else validation,
        params=raw,
        curves={n: curve(plots[n], x, y) for n, (x, y) in CURVES.items()},
        hashes=artifacts,
        inputs=inputs,
        verdict=judge(f"no {METRICS}" if metrics == "absent" else metrics, verdict_gate),
    )


def timed(challenger: Side, champion: Reader, params: GateParams) -> Side:
    """The challenger's verdict with the gate's slowdown check, as `make train` ran it: the
    workspace's latency record against the champion's (no check where either has none)."""
    records = []
    for read in (on_disk, champion):
        try:
            records.append(Latency.model_validate_json(read(LATENCY) or ""))
        except ValidationError:
            return challenger
    if challenger.verdict.passed is None:
        return challenger
    check = gate.slowdown(records[0], records[1], params.max_slowdown)
    checks = [*challenger.verdict.checks, check]
    return replace(challenger, verdict=Verdict(challenger.verdict.passed and check.passed, checks))
