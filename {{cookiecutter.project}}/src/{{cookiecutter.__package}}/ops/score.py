"""`make score`: the ML Test Score (Breck et al., 2017), from the results of the last `make test`.

Each of the rubric's 28 tests names how it is verified here. `tests`: the tests marked
`@pytest.mark.score("<item>")` ran in the last `make test` and each passed, having asserted
something computed (a skipped test, a failed one, or one asserting only constants scores
nothing). `stage:`, `workflow:`, `alert:` and `dependabot:` read the pipeline, the workflows,
the alert rules and Dependabot's configuration as YAML: a workflow step counts only when its job
and its own `if:` would run on this repository (its variables unset unless given by `--var`).
The items a team must judge stay at 0, with the reason. A section's score is the sum of its
items; the final score is the lowest section's.

This module is also the pytest plugin (`-p` in pyproject.toml) that records, for each marked
test, its items and how many assertions on computed values passed, in the JUnit report.
"""

import argparse
import ast
import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .. import cli

RUBRIC = Path(__file__).with_name("rubric.yaml")
RESULTS = Path("build/test-results.xml")


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    checks: tuple[str, ...] = ()
    manual: str = ""  # why no check can decide it here


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

# The recording half: a pytest plugin.

ASSERTED = pytest.StashKey[int]()
DESELECTED = pytest.StashKey[int]()


def computed(expression: str) -> bool:
    """Whether an assertion's expression reads anything computed (`assert True` does not)."""
    try:
        tree = ast.parse(f"({expression.strip()})", mode="eval")
    except SyntaxError:
        return True
    kinds = (ast.Name, ast.Attribute, ast.Call, ast.Subscript)
    return any(isinstance(node, kinds) for node in ast.walk(tree))


def pytest_assertion_pass(item: pytest.Item, lineno: int, orig: str, expl: str) -> None:
    if computed(orig):
        item.stash[ASSERTED] = item.stash.get(ASSERTED, 0) + 1


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        config = items[0].config
        config.stash[DESELECTED] = config.stash.get(DESELECTED, 0) + len(items)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # The JUnit report takes each test's properties from its teardown report, made after this.
    marks = [mark.args[0] for mark in item.iter_markers("score")]
    if marks:
        item.user_properties += [("score", mark) for mark in marks]
        item.user_properties.append(("assertions", item.stash.get(ASSERTED, 0)))
        # A run of chosen paths, or with tests deselected, says nothing of the tests it left out.
        config = item.config
        if config.args_source != pytest.Config.ArgsSource.TESTPATHS or config.stash.get(
            DESELECTED, 0
        ):
            item.user_properties.append(("partial", "yes"))


# The reading half.


OUTCOMES = {"failure": "failed", "error": "error", "skipped": "skipped"}


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # passed, failed, error or skipped
    assertions: int


def results(path: Path) -> dict[str, list[Case]]:
    """The marked tests of a JUnit report, by item; a partial run is refused."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise cli.UserError(f"no test results in {path}: run make test first") from None
    except ET.ParseError as error:
        raise cli.UserError(f"{path} is not a JUnit report ({error}): run make test") from None
    found: dict[str, list[Case]] = {}
    for case in tree.iter("testcase"):
        properties = [(p.get("name"), p.get("value", "")) for p in case.iter("property")]
        if ("partial", "yes") in properties:
            raise cli.UserError(
                f"{path} holds the results of some tests only (paths or -k given): run make test"
            )
        items = [value for name, value in properties if name == "score"]
        if not items:
            continue
        outcomes = [OUTCOMES[child.tag] for child in case if child.tag in OUTCOMES]
        counts = [int(value) for name, value in properties if name == "assertions"]
        module = case.get("classname", "").replace(".", "/")
        name = f"{module}.py::{case.get('name')}"
        for item in items:
            found.setdefault(item, []).append(
                Case(name, outcomes[0] if outcomes else "passed", min(counts, default=0))
            )
    return found


def stale(root: Path, path: Path) -> str | None:
    """A source or test file changed since the test run, if any."""
    ran = (root / path).stat().st_mtime
    changed = [
        p
        for folder in ("src", "tests")
        for p in (root / folder).rglob("*.py")
        if p.stat().st_mtime > ran
    ]
    return str(changed[0].relative_to(root)) if changed else None


# GitHub's `if:` expressions, evaluated for a repository whose variables are known and whose
# events, step outputs and files are not: a condition is false only when it must be.
UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "unknown"})()
TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|&&|\|\||[!<>(),])"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[\w*-]+|\[[^\]]*\])*))"
)
STATUS = {"always": True, "success": True, "cancelled": False, "failure": False}


def falsy(value: Any) -> bool | None:
    """Whether a value is false by GitHub's rules; None when unknown."""
    return None if value is UNKNOWN else value in (False, 0, "", None)


class Condition:
    """One `if:` expression, parsed by recursive descent and evaluated as it is parsed."""

    def __init__(self, text: str, variables: dict[str, str]) -> None:
        wrapped = re.fullmatch(r"\s*\$\{\{(.*)\}\}\s*", text, re.DOTALL)
        text = wrapped.group(1) if wrapped else text
        self.tokens: list[tuple[str, str]] = []
        self.at = 0
        position = 0
        while text[position:].strip():
            match = TOKEN.match(text, position)
            if not match:
                raise ValueError(f"cannot read the condition {text!r} at {text[position:]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.variables = variables

    def value(self) -> Any:
        return self.either()

    def peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def take(self) -> tuple[str, str]:
        self.at += 1
        return self.tokens[self.at - 1]

    def either(self) -> Any:
        left = self.both()
        while self.peek() == "||":
            self.take()
            right = self.both()
            if falsy(left) is False:
                continue
            left = right if falsy(left) else (True if falsy(right) is False else UNKNOWN)
        return left

    def both(self) -> Any:
        left = self.compare()
        while self.peek() == "&&":
            self.take()
            right = self.compare()
            if falsy(left) is True:
                continue
            left = right if falsy(left) is False else (False if falsy(right) else UNKNOWN)
        return left

    def compare(self) -> Any:
        left = self.unary()
        while self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            right = self.unary()
            if UNKNOWN in (left, right):
                left = UNKNOWN
                continue
            a, b = (
                v.lower() if isinstance(v, str) else ("" if v is None else v) for v in (left, right)
            )
            left = {"==": a == b, "!=": a != b}.get(op, UNKNOWN)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            inner = falsy(self.unary())
            return UNKNOWN if inner is None else inner
        return self.primary()

    def primary(self) -> Any:
        kind, token = self.take()
        if token == "(":
            inner = self.either()
            self.take()
            return inner
        if kind == "string":
            return token[1:-1].replace("''", "'")
        if kind == "number":
            return float(token)
        if self.peek() == "(":  # a function: only the status functions are known
            self.take()
            while self.peek() != ")":
                self.either()
                if self.peek() == ",":
                    self.take()
            self.take()
            return STATUS.get(token.lower(), UNKNOWN)
        literals = {"true": True, "false": False, "null": None}
        if token in literals:
            return literals[token]
        context, _, key = token.partition(".")
        if context == "vars":
            return self.variables.get(key, "")
        if context == "secrets":  # a new repository has none but the one GitHub gives every run
            return UNKNOWN if key == "GITHUB_TOKEN" else ""
        return UNKNOWN


def may_run(condition: object, variables: dict[str, str]) -> bool:
    """Whether a job or step with this `if:` can run (no `if:` always can)."""
    if condition is None or isinstance(condition, bool):
        return condition is not False
    return falsy(Condition(str(condition), variables).value()) is not True


def make_targets(script: str) -> list[str]:
    """The make targets a step's shell runs, command by command."""
    targets = []
    for command in re.split(r"&&|\|\||[;\n|]", script):
        try:
            words = shlex.split(command, comments=True)
        except ValueError:
            continue
        while words and (
            words[0] in {"then", "else", "do", "!", "{", "(", "time"} or "=" in words[0]
        ):
            words.pop(0)
        if words[:1] == ["make"]:
            targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


def blockers(jobs: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """Per job, the `if:` that keeps it from running on this repository ("" when none does)."""
    found: dict[str, str] = {}

    def blocker(job_id: str) -> str:
        if job_id not in found:
            condition = jobs[job_id].get("if")
            needs = jobs[job_id].get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            # A job whose `if:` names no status function is skipped when a needed job is.
            status = re.search(r"\b(always|cancelled|failure|success)\(", str(condition or ""))
            upstream = [] if status else [blocker(n) for n in needs]
            if not may_run(condition, variables):
                found[job_id] = f"job {job_id} runs only if {condition}"
            else:
                found[job_id] = next((b for b in upstream if b), "")
        return found[job_id]

    for job_id in jobs:
        blocker(job_id)
    return found


def workflow_targets(root: Path, variables: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """Per workflow and make target, for each step that runs it, the `if:` that keeps the step
    from running on this repository ("" where nothing does)."""
    found: dict[str, dict[str, list[str]]] = {}
    for path in sorted((root / ".github/workflows").glob("*.y*ml")):
        jobs = yaml.safe_load(path.read_text()).get("jobs", {})
        blocked = blockers(jobs, variables)
        targets: dict[str, list[str]] = {}
        for job_id, job in jobs.items():
            for step in steps_of(root, job.get("steps", [])):
                condition = step.get("if")
                why = blocked[job_id] or (
                    "" if may_run(condition, variables) else f"its step runs only if {condition}"
                )
                for target in make_targets(str(step.get("run", ""))):
                    targets.setdefault(target, []).append(why)
        found[path.name] = targets
    return found


def steps_of(root: Path, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A job's steps, with the steps of the repository's own actions (`uses: $/path`) in place."""
    expanded = []
    for step in steps:
        expanded.append(step)
        uses = str(step.get("uses", ""))
        if uses.startswith("$/") and may_run(step.get("if"), {}):
            action = yaml.safe_load((root / uses.removeprefix("$/") / "action.yml").read_text())
            expanded += action["runs"].get("steps", [])
    return expanded


# The verdicts.


def verdict(
    root: Path, check: str, found: dict[str, list[Case]], item: str, variables: dict[str, str]
) -> tuple[bool, str]:
    """Whether the check holds, and what it saw."""
    kind, _, what = check.partition(":")
    if kind == "tests":
        cases = found.get(item, [])
        if not cases:
            return False, f'no test marked score("{item}") ran'
        failed = [f"{c.name} {c.outcome}" for c in cases if c.outcome != "passed"]
        empty = [
            f"{c.name} asserted nothing computed"
            for c in cases
            if c.outcome == "passed" and not c.assertions
        ]
        if failed or empty:
            return False, "; ".join(failed + empty)
        return True, f"{len(cases)} {'test' if len(cases) == 1 else 'tests'} passed"
    if kind == "stage":
        stages = yaml.safe_load((root / "dvc.yaml").read_text()).get("stages", {})
        return what in stages, f"dvc.yaml {'runs' if what in stages else 'lacks'} stage {what}"
    if kind == "workflow":
        name, _, target = what.partition(":")
        blockers = workflow_targets(root, variables).get(name, {}).get(target, [])
        if "" in blockers:
            return True, f"{name} runs make {target}"
        if blockers:
            return False, f"{name} does not run make {target} here: {blockers[0]}"
        return False, f"{name} never runs make {target}"
    if kind == "alert":
        path = root / "deploy/base/prometheusrule.yaml"
        rules = [r for g in yaml.safe_load(path.read_text())["spec"]["groups"] for r in g["rules"]]
        held = any(rule.get("alert") == what and rule.get("expr") for rule in rules)
        return (
            held,
            f"alert {what} {'fires on' if held else 'missing from'} {path.relative_to(root)}",
        )
    if kind == "dependabot":
        path = root / ".github/dependabot.yml"
        updates = yaml.safe_load(path.read_text()).get("updates", []) if path.is_file() else []
        held = any(u.get("package-ecosystem") == what for u in updates)
        return held, f"Dependabot {'updates' if held else 'does not update'} {what}"
    raise ValueError(f"unknown kind of check {check!r}")


Row = tuple[Item, int, list[str]]


def score(
    root: Path, found: dict[str, list[Case]], variables: dict[str, str] | None = None
) -> dict[str, list[Row]]:
    """Per section: each item, its point, and what decided it (the failed checks, if any)."""
    result = {}
    for section, items in SECTIONS.items():
        rows = []
        for item in items:
            seen = [verdict(root, c, found, item.id, variables or {}) for c in item.checks]
            failed = [why for held, why in seen if not held]
            points = int(bool(item.checks) and not failed)
            rows.append((item, points, failed or [why for _, why in seen] or [item.manual]))
        result[section] = rows
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="score", description=__doc__)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="the JUnit report of make test"
    )
    parser.add_argument("--minimum", type=int, default=0, help="fail below this final score")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable this repository sets on GitHub (the workflows' `vars.NAME`)",
    )
    parser.add_argument(
        "--workflows",
        action="store_true",
        help="print each workflow's make targets that run on this repository (JSON) and exit",
    )
    args = parser.parse_args(argv)
    bad = [v for v in args.var if "=" not in v]
    if bad:
        raise cli.UserError(f"--var {bad[0]}: give NAME=VALUE")
    variables = dict(v.split("=", 1) for v in args.var)
    root = Path()
    if args.workflows:
        steps = workflow_targets(root, variables)
        print(json.dumps({w: sorted(t for t, b in s.items() if "" in b) for w, s in steps.items()}))
        return
    found = results(args.results)
    changed = stale(root, args.results)
    if changed:
        raise cli.UserError(
            f"{changed} changed after the tests of {args.results} ran: run make test"
        )
    result = score(root, found, variables)
    sums = {section: sum(points for _, points, _ in rows) for section, rows in result.items()}
    for section, rows in result.items():
        print(f"{section}: {sums[section]} of {len(rows)}")
        for item, points, why in rows:
            print(f"  {item.id:5} {points}  {item.title} ({'; '.join(why)})")
    final = min(sums.values())
    print(f"ML Test Score: {final} (the lowest section)")
    if final < args.minimum:
        raise cli.UserError(f"ML Test Score {final} is below {args.minimum}")


if __name__ == "__main__":
    cli.run(main)
