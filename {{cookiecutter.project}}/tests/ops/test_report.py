"""`make report`: the workspace against BASE, in a real git repository with two commits."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.ops import report
from tumor_classifier.params import Params

from conftest import write_params

# The machine may have no git identity, and a developer's may sign commits or run hooks.
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
GIT += ["-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"]

CHAMPION: dict[str, Any] = {
    "accuracy": 0.96,
    "precision": 0.96,
    "recall": 0.95,
    "f1": 0.96,
    "roc_auc": 0.99,
    "log_loss": 0.1,
    "baseline": {
        "accuracy": 0.63,
        "precision": 0.32,
        "recall": 0.5,
        "f1": 0.39,
        "roc_auc": 0.5,
        "log_loss": 0.66,
    },
    "per_class": {
        "benign": {"precision": 0.96, "recall": 0.99, "f1": 0.97, "support": 72},
        "malignant": {"precision": 0.98, "recall": 0.93, "f1": 0.95, "support": 42},
    },
    "slices": {
        "mean_radius 7.8..13": {"rows": 57, "accuracy": 0.98, "f1": 0.97},
        "mean_radius 13..23": {"rows": 57, "accuracy": 0.93, "f1": 0.92},
    },
}
DATA, NEW_DATA = "a" * 32, "b" * 32
MODEL, NEW_MODEL = "1" * 32, "2" * 32


def git(*args: str) -> str:
    return subprocess.run([*GIT, *args], check=True, capture_output=True, text=True).stdout


def write(
    p: Params,
    metrics: dict[str, Any],
    *,
    data: str = DATA,
    model: str = MODEL,
    exported: str | None = None,
    rows: int = 569,
    cv: float = 0.99,
) -> None:
    """The files the pipeline leaves in git, for one revision; exported: export's stale dep."""
    write_params(Path(), p)
    reports, plots = Path("reports"), Path("reports/plots")
    plots.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(metrics))
    train = {"score": cv, "std": 0.005, "scoring": "roc_auc_ovr", "best_params": {"C": 1.0}}
    (reports / "train.json").write_text(json.dumps({**train, "candidates": []}))
    classes = {"benign": rows - 212, "malignant": 212}
    validation = {"rows": rows, "columns": 31, "checks": 93, "missing": {}, "classes": classes}
    (reports / "validation.json").write_text(json.dumps(validation))
    (plots / "roc.csv").write_text(f"fpr,tpr\n0,0\n0.05,{metrics['recall']}\n1,1\n")
    (plots / "precision_recall.csv").write_text("recall,precision\n0,1\n0.9,0.95\n1,0.37\n")
    Path("data").mkdir(exist_ok=True)
    dvc = {"outs": [{"md5": data, "size": 124869, "hash": "md5", "path": "raw.csv"}]}
    Path("data/raw.csv.dvc").write_text(yaml.safe_dump(dvc))
    lock = {
        "schema": "2.0",
        "stages": {
            "validate": {
                "deps": [{"path": "data/raw.csv", "md5": data}],
                "outs": [
                    {"path": "data/validated.parquet", "md5": f"{data[:8]}{'3' * 24}"},
                    {"path": "reports/validation.json", "md5": "f" * 32},
                ],
            },
            "split": {
                "deps": [{"path": "data/validated.parquet", "md5": f"{data[:8]}{'3' * 24}"}],
                "outs": [{"path": "data/split", "md5": f"{data[:8]}{'4' * 24}.dir"}],
            },
            "train": {
                "deps": [
                    {"path": "data/split/train.parquet", "md5": f"{data[:8]}{'5' * 24}"},
                    {
                        "path": "src/tumor_classifier/pipeline/train.py",
                        "md5": "e" * 32,
                    },
                ],
                "outs": [
                    {"path": "models/model.joblib", "md5": model},
                    {"path": "models/baseline.joblib", "md5": "9" * 32},
                ],
            },
            "export": {
                "deps": [{"path": "models/model.joblib", "md5": exported or model}],
                "outs": [{"path": "models/onnx", "md5": f"{model[:8]}{'0' * 24}.dir"}],
            },
        },
    }
    Path("dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def commit(message: str) -> None:
    git("add", "-A")
    git("commit", "--quiet", "-m", message)


def run(base: str = "main") -> str:
    return report.report(base, Path("reports/pr"))


def with_gate(p: Params, **update: Any) -> Params:
    return p.model_copy(update={"gate": p.gate.model_copy(update=update)})


@pytest.fixture
def repo(workdir: Path, project_params: Params) -> Path:
    """A repository whose `main` holds a trained champion; the workspace is on a branch of it."""
    git("init", "--quiet", "--initial-branch=main")
    write(project_params, CHAMPION)
    commit("champion")
    git("switch", "--quiet", "--create", "challenger")
    return workdir


def test_the_report_judges_the_challengers_speed_as_the_gate_does(
    repo: Path, project_params: Params
) -> None:
    """A challenger whose predict time over its baseline's doubled against the champion's record
    fails the report's verdict, as it failed make train's gate."""
    git("switch", "--quiet", "main")
    record = {"rows": 1000, "model_ms": 2.0, "baseline_ms": 1.0, "relative": 2.0}
    Path("reports/latency.json").write_text(json.dumps(record))
    commit("the champion's latency")
    git("switch", "--quiet", "--create", "slower")
    slower = {"rows": 1000, "model_ms": 8.0, "baseline_ms": 2.0, "relative": 4.0}
    Path("reports/latency.json").write_text(json.dumps(slower))
    headline = run().splitlines()[2]
    assert headline.startswith(
        "❌ **The challenger fails the gate**: predict time / champion's <= 1.5 (2)"
    )
    Path("reports/latency.json").write_text(json.dumps({**slower, "relative": 2.4}))
    assert run().splitlines()[2].startswith("✅ **The challenger passes the gate** (7 checks)")


@pytest.mark.score("M1")
def test_a_better_challenger_shows_what_changed_and_why(repo: Path, project_params: Params) -> None:
    better = copy.deepcopy(CHAMPION)
    better.update(accuracy=0.97, log_loss=0.08)
    # New data moves the quantile bins of the slices.
    better["slices"] = {
        "mean_radius 7.7..12.9": {"rows": 60, "accuracy": 0.98, "f1": 0.97},
        "mean_radius 12.9..25": {"rows": 60, "accuracy": 0.95, "f1": 0.92},
    }
    better["per_class"]["malignant"]["recall"] = 0.95
    search = project_params.train.search.model_copy(update={"cv_folds": 3})
    fixed = {**project_params.train.fixed, "tol": 0.001}
    train = project_params.train.model_copy(update={"search": search, "fixed": fixed})
    p = project_params.model_copy(update={"train": train})
    write(p, better, data=NEW_DATA, model=NEW_MODEL, rows=600, cv=0.995)
    commit("challenger")

    md = run()

    head = git("rev-parse", "--short", "HEAD").strip()
    base = git("rev-parse", "--short", "main").strip()
    assert md.splitlines()[:5] == [
        "## Model report: workspace vs `main`",
        "",
        "✅ **The challenger passes the gate** (6 checks); "
        "the champion `main` passes its own gate.",
        "",
        f"Champion `main` ({base}); challenger: the workspace ({head}), which changes 2 params, "
        "`data/raw.csv` and 4 derived data and model files.",
    ]
    assert md == Path("reports/pr/report.md").read_text()
    for row in [
        "| metric | champion `main` | challenger | change | baseline |",
        "| accuracy | 0.96 | 0.97 | +0.0100 | 0.63 |",
        "| log_loss | 0.1 | 0.08 | -0.0200 | 0.66 |",
        "| worst slice (mean_radius 13..23) accuracy >= 0.85 | ✅ 0.93 | — |",
        "| worst slice (mean_radius 12.9..25) accuracy >= 0.85 | — | ✅ 0.95 |",
        "| train.search.cv_folds | 5 | 3 |",
        "| train.fixed.tol | — | 0.001 |",
        "| `data/raw.csv` | aaaaaaaa | bbbbbbbb |",
        "| `models/model.joblib` | 11111111 | 22222222 |",
        "| `data/split` | aaaaaaaa | bbbbbbbb |",
        "| mean_radius 13..23 → mean_radius 12.9..25 | 57 → 60 | 0.93 → 0.95 | 0.92 |",
        "| malignant | 0.98 | 0.93 → 0.95 | 0.95 | 42 |",
        "| rows | 569 | 600 |",
        "| class benign | 357 | 388 |",
        "| CV roc_auc_ovr | 0.9900 ± 0.0050 | 0.9950 ± 0.0050 |",
    ]:
        assert row in md.splitlines(), row
    assert "Unchanged: `models/baseline.joblib`.\n" in md
    assert "src/" not in md  # code changes belong to the PR's diff
    assert "split/train.parquet" not in md  # the hash of data/split covers it
    for name in ["metrics", "roc", "precision_recall"]:
        assert Path(f"reports/pr/{name}.png").read_bytes().startswith(b"\x89PNG")
    # GitHub draws Mermaid in the comment; a relative image link would be broken there.
    assert "](" not in md.split("### Plots")[1]
    assert md.count("```mermaid\n") == 3
    assert 'title "Test-set metrics: workspace (blue bars), main (orange line)"' in md
    assert "    bar [0.97, 0.96, 0.95, 0.96, 0.99, 0.08]" in md
    assert 'title "ROC: workspace (blue), main (orange)"' in md
    assert (
        "The same plots as PNG: `metrics.png`, `roc.png`, `precision_recall.png`, beside this "
        "report (in CI, the run's artifact)."
    ) in md


@pytest.mark.score("M4")
def test_the_report_shows_the_current_model_on_todays_data_beside_the_retrained(
    repo: Path, project_params: Params
) -> None:
    write(project_params, CHAMPION, data=NEW_DATA, model=NEW_MODEL)
    stale = {"accuracy": 0.81, "log_loss": 0.4}
    record = {
        "champion": "main",
        "champion_scores": stale,
        "gap": {"accuracy": 0.15, "log_loss": -0.3},
    }
    Path("reports/staleness.json").write_text(json.dumps(record))
    md = run().splitlines()
    title = "### Staleness: `main`'s model on the challenger's test set"
    table = md[md.index(title) + 2 :][:4]
    assert table == [
        "| metric | current model | retrained (challenger) | gap |",
        "|---|---|---|---|",
        "| accuracy | 0.81 | 0.96 | +0.1500 |",
        "| log_loss | 0.4 | 0.1 | -0.3000 |",
    ]
    note = {"champion": "main", "note": "no champion model: no revision 'main' in this clone"}
    Path("reports/staleness.json").write_text(json.dumps(note))
    md = run().splitlines()
    assert md[md.index(title) + 2] == f"Not measured: {note['note']}."
    Path("reports/staleness.json").unlink()
    assert not [line for line in run().splitlines() if line.startswith("### Staleness")]


def test_a_challenger_failing_the_gate_gets_its_verdict_without_the_gate_stage(
    repo: Path, project_params: Params
) -> None:
    # What `dvc repro` leaves when the gate stage fails: new metrics, no gate.json, and export
    # (after the gate) not rerun, so its record of the model is the old one.
    worse = copy.deepcopy(CHAMPION)
    worse.update(roc_auc=0.6)
    worse["slices"]["mean_radius 13..23"]["accuracy"] = 0.8
    write(project_params, worse, model=NEW_MODEL, exported=MODEL)

    md = run()

    assert (
        "❌ **The challenger fails the gate**: roc_auc >= 0.95 (0.6), "
        "roc_auc >= baseline 0.5 + 0.2 (0.6), "
        "worst slice (mean_radius 13..23) accuracy >= 0.85 (0.8); "
        "the champion `main` passes its own gate."
    ) in md
    assert "with uncommitted changes" in md
    assert "| roc_auc >= 0.95 | ✅ 0.99 | ❌ 0.6 |" in md
    assert "| roc_auc | 0.99 | 0.6 | -0.3900 | 0.5 |" in md
    assert "| `models/model.joblib` | 11111111 | 22222222 |" in md
    assert "No params changed." in md


def test_each_side_is_judged_by_its_own_gate_params(repo: Path, project_params: Params) -> None:
    git("switch", "--quiet", "main")
    strict = with_gate(project_params, min={**project_params.gate.min, "accuracy": 0.99})
    write(strict, CHAMPION)
    commit("a stricter gate")
    git("switch", "--quiet", "challenger")

    md = run()

    assert (
        "✅ **The challenger passes the gate** (6 checks); "
        "the champion `main` fails its own: accuracy >= 0.99 (0.96)."
    ) in md
    assert "| accuracy >= 0.9 | — | ✅ 0.96 |" in md
    assert "| accuracy >= 0.99 | ❌ 0.96 | — |" in md
    assert "| gate.min.accuracy | 0.99 | 0.9 |" in md


def test_a_first_pull_request_has_no_champion_and_says_so(
    workdir: Path, project_params: Params
) -> None:
    git("init", "--quiet", "--initial-branch=main")
    Path("README.md").write_text("# a new project\n")
    commit("start")
    git("switch", "--quiet", "--create", "first-model")
    new = {**copy.deepcopy(CHAMPION), "brier": 0.04}
    write(project_params, new)

    md = run()

    assert (
        "✅ **The challenger passes the gate** (6 checks); "
        "the champion `main` has no verdict: no reports/metrics.json."
    ) in md
    assert "`main` has no reports/metrics.json: nothing to compare with yet." in md
    assert "`main` has no params.yaml." in md
    assert "| accuracy | — | 0.96 |  | 0.63 |" in md
    assert "| brier | — | 0.04 |  | — |" in md
    assert "| `data/raw.csv` | — | aaaaaaaa |" in md
    assert "| rows | — | 569 |" in md
    assert "| estimator | — | `sklearn.linear_model.LogisticRegression` |" in md


def test_a_metric_new_in_the_workspace_and_a_missing_validation_report(
    repo: Path, project_params: Params
) -> None:
    write(project_params, {**copy.deepcopy(CHAMPION), "brier": 0.04})
    # A failed validate stage: DVC removed its report before running it.
    Path("reports/validation.json").unlink()

    md = run()

    assert "the champion `main` passes its own gate." in md
    assert "| brier | — | 0.04 |  | — |" in md
    assert "No reports/validation.json in the workspace: the validate stage failed" in md
    assert "| rows | 569 | — |" in md


def test_a_fresh_clone_compares_with_origin(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """CI checks out the pull request alone: `main` is only origin/main there."""
    clone = tmp_path_factory.mktemp("clone") / "repo"
    git("clone", "--quiet", "--branch", "challenger", str(repo), str(clone))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(clone)
        assert git("branch", "--list", "main") == ""
        assert run().startswith("## Model report: workspace vs `origin/main`\n")


def test_broken_files_plain_folders_and_unknown_revisions_fail_in_one_line(
    repo: Path, tmp_path: Path
) -> None:
    Path("reports/metrics.json").write_text("<<<<<<< HEAD\n{}\n=======\n")
    with pytest.raises(
        UserError, match=r"^reports/metrics.json in the workspace is not valid JSON$"
    ):
        run()
    with pytest.raises(
        UserError, match=r"^BASE 'nope' is not a git revision here: run `git fetch origin nope`"
    ):
        run("nope")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git looks no further up than plain
        mp.chdir(plain)
        with pytest.raises(UserError, match=r"^not a git repository"):
            run()


def test_command_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report.main(["--base", "main", "--out", "reports/pr"])
    assert capsys.readouterr().out == "wrote reports/pr/report.md\n"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.ops.report",
            "--base",
            "release",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "report: BASE 'release' is not a git revision here: run `git fetch origin release` "
        "(in CI, check out with fetch-depth: 0) or set BASE to a branch or commit\n"
    )
