"""`make score`: an item scores only from the results of tests that ran, passed and asserted."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.ops import score

from conftest import ROOT

ITEMS = """
import pytest


@pytest.mark.score("D1")
def test_real() -> None:
    assert sum([1, 2]) == 3


@pytest.mark.score("D2")
@pytest.mark.skip(reason="later")
def test_skipped() -> None:
    assert sum([1, 2]) == 3


@pytest.mark.score("D4")
def test_constant() -> None:
    assert True


@pytest.mark.score("D6")
def test_failing() -> None:
    assert sum([1]) == 2


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.score("D7"))])
def test_cases(n: int) -> None:
    assert n < 2
"""


def pytest_run(root: Path, *args: str) -> Path:
    """Run pytest in root with the project's configuration; the path of its JUnit report."""
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    report = root / "build/test-results.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        check=False,
    )
    return report


def test_the_junit_report_holds_each_marked_tests_outcome_and_assertions(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_items.py").write_text(ITEMS)
    found = score.results(pytest_run(tmp_path))
    name = "tests/test_items.py::"
    assert found == {
        "D1": [score.Case(f"{name}test_real", "passed", 1)],
        "D2": [score.Case(f"{name}test_skipped", "skipped", 0)],
        "D4": [score.Case(f"{name}test_constant", "passed", 0)],
        "D6": [score.Case(f"{name}test_failing", "failed", 0)],
        "D7": [score.Case(f"{name}test_cases[2]", "failed", 0)],
    }
    verdicts = {item: score.verdict(tmp_path, "tests", found, item, {}) for item in found}
    assert verdicts == {
        "D1": (True, "1 test passed"),
        "D2": (False, f"{name}test_skipped skipped"),
        "D4": (False, f"{name}test_constant asserted nothing computed"),
        "D6": (False, f"{name}test_failing failed"),
        "D7": (False, f"{name}test_cases[2] failed"),
    }
    assert score.verdict(tmp_path, "tests", found, "I3", {}) == (
        False,
        'no test marked score("I3") ran',
    )
    # A run of some tests only says nothing of the others: it is refused, not scored.
    for chosen in (["-k", "real"], ["tests/test_items.py"]):
        partial = pytest_run(tmp_path, *chosen)
        with pytest.raises(UserError, match="holds the results of some tests only"):
            score.results(partial)


def replace_bodies(path: Path, body: str) -> None:
    """Give every test function of a file this body instead of its own."""
    lines = path.read_text().splitlines()
    tests = [
        node
        for node in ast.walk(ast.parse("\n".join(lines)))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]
    for node in sorted(tests, key=lambda n: -n.lineno):
        indent = " " * node.body[0].col_offset
        lines[node.body[0].lineno - 1 : node.end_lineno] = [indent + body]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (None, None),
        ("pytest.skip('stub')", "skipped"),
        ("assert True", "asserted nothing computed"),
        ("assert __name__ == ''", "failed"),
    ],
)
def test_the_gates_items_score_only_while_their_real_tests_pass(
    tmp_path: Path, body: str | None, why: str | None
) -> None:
    for name in ("params.yaml", "tests/conftest.py", "tests/pipeline/test_gate.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    if body:
        replace_bodies(tmp_path / "tests/pipeline/test_gate.py", body)
    found = score.results(pytest_run(tmp_path))
    for item in ("M5", "M6", "I4"):
        held, seen = score.verdict(tmp_path, "tests", found, item, {})
        assert held is (body is None), (item, seen)
        assert why is None or seen.endswith(why), seen


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """What the structural checks read: the workflows, dvc.yaml and the alert rules."""
    for folder in (".github", "deploy"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def held(root: Path, check: str, variables: dict[str, str] | None = None) -> bool:
    return score.verdict(root, check, {}, "", variables or {})[0]


def drop_steps(path: Path, command: str) -> None:
    """Delete the steps whose shell is this command."""
    spec = yaml.safe_load(path.read_text())
    for job in spec["jobs"].values():
        job["steps"] = [s for s in job.get("steps", []) if s.get("run") != command]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_deleting_the_training_steps_loses_their_items(copy: Path) -> None:
    settings = {"DATA_SOURCE": "s3://bucket/export.csv", "BOT_CLIENT_ID": "123"}
    assert held(copy, "workflow:train.yml:train")
    assert held(copy, "workflow:retrain.yml:train", settings)
    for name in ("train.yml", "retrain.yml"):
        drop_steps(copy / ".github/workflows" / name, "make train")
        # The words stay in notices and in the retrain pull request's body; the steps are gone.
        assert "make train" in (copy / ".github/workflows" / name).read_text()
    assert not held(copy, "workflow:train.yml:train")
    assert not held(copy, "workflow:retrain.yml:train", settings)


def test_a_job_that_cannot_run_here_runs_nothing(copy: Path) -> None:
    # The retrain job needs two repository variables: a default repository never retrains.
    assert score.verdict(copy, "workflow:retrain.yml:train", {}, "Mon4", {}) == (
        False,
        "retrain.yml does not run make train here: job retrain runs only if "
        "vars.DATA_SOURCE != '' && vars.BOT_CLIENT_ID != ''",
    )
    assert not held(copy, "workflow:retrain.yml:train", {"DATA_SOURCE": "s3://bucket/x"})
    # A step's own `if:` counts too.
    path = copy / ".github/workflows/train.yml"
    spec = yaml.safe_load(path.read_text())
    (step,) = [s for j in spec["jobs"].values() for s in j["steps"] if s.get("run") == "make train"]
    step["if"] = "vars.TRAIN == 'true'"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert not held(copy, "workflow:train.yml:train")
    assert held(copy, "workflow:train.yml:train", {"TRAIN": "true"})


@pytest.mark.parametrize(
    ("condition", "variables", "runs"),
    [
        ("github.event_name == 'pull_request'", {}, True),
        ("vars.URI != ''", {}, False),
        ("vars.URI != ''", {"URI": "https://mlflow"}, True),
        ("vars.A != '' && vars.B != ''", {"A": "1"}, False),
        ("vars.A == 'TRUE'", {"A": "true"}, True),  # GitHub compares strings ignoring case
        ("github.event.repository.visibility == 'public' || vars.A == 'true'", {}, True),
        ("!cancelled() && steps.train.outcome != 'skipped'", {}, True),
        ("$" + "{" * 2 + " vars.URI == '' " + "}" * 2, {}, True),  # GitHub's own wrapping
        ("failure()", {}, False),
        ("!(vars.A == '')", {}, False),
        ("secrets.TOKEN != ''", {}, False),
        ("secrets.GITHUB_TOKEN != ''", {}, True),
        ("always()", {}, True),
    ],
)
def test_conditions(condition: str, variables: dict[str, str], runs: bool) -> None:
    assert score.may_run(condition, variables) is runs


def test_make_targets_are_commands_not_words() -> None:
    script = (
        'git add -A && make commit-results\nmake push REMOTE=pr # make train\necho "make bento"'
    )
    assert score.make_targets(script) == ["commit-results", "push"]
    assert score.make_targets("if [ -n x ]; then make report BASE=main; fi") == ["report"]


def test_structural_checks_read_yaml(copy: Path) -> None:
    assert held(copy, "stage:gate")
    assert not held(copy, "stage:canary")
    assert held(copy, "alert:ServiceLatencyAboveSLO")
    assert not held(copy, "alert:ServiceLatency")  # a prefix of a rule is no rule
    assert held(copy, "dependabot:uv")
    (copy / ".github/dependabot.yml").unlink()
    assert not held(copy, "dependabot:uv")


def test_every_item_is_checked_or_says_why() -> None:
    for items in score.SECTIONS.values():
        for item in items:
            assert bool(item.checks) != bool(item.manual), item.id
    assert sum(len(items) for items in score.SECTIONS.values()) == 28


def test_the_readme_gives_each_manual_item_its_reason() -> None:
    readme = (ROOT / "README.md").read_text()
    for items in score.SECTIONS.values():
        for item in items:
            if item.manual:
                assert f"| {item.id} {item.title} | {item.manual} |" in readme, item.id


def test_every_marked_item_is_in_the_rubric() -> None:
    automated = {i.id for items in score.SECTIONS.values() for i in items if "tests" in i.checks}
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "pytest.mark.score"
                and path.name != "test_score.py"
            ):
                assert ast.literal_eval(node.args[0]) in automated, (path, ast.unparse(node))


def test_main_prints_each_item_and_fails_below_the_minimum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_items.py").write_text(ITEMS)
    report = pytest_run(tmp_path)
    for name in (".github", "deploy"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    score.main(["--results", str(report)])
    out = capsys.readouterr().out
    assert (
        "  D1    1  Feature expectations are captured in a schema (1 test passed; dvc.yaml" in out
    )
    assert "  Mon1  1  Dependency changes result in notification (Dependabot updates uv; " in out
    assert out.endswith("ML Test Score: 0 (the lowest section)\n")
    with pytest.raises(UserError, match="ML Test Score 0 is below 1"):
        score.main(["--results", str(report), "--minimum", "1"])
    later = report.stat().st_mtime + 10
    os.utime(tmp_path / "tests/test_items.py", (later, later))
    with pytest.raises(UserError, match=r"tests/test_items\.py changed after the tests of"):
        score.main(["--results", str(report)])
    with pytest.raises(UserError, match=r"no test results in missing\.xml: run make test first"):
        score.main(["--results", "missing.xml"])
