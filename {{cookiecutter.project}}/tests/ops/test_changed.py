"""`make changed`: which changes the pipeline reads, decided from dvc.yaml, in a real repository."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.ops import changed

from conftest import ROOT

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
GIT += ["-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"]
PIPELINE = """
stages:
  train:
    cmd: python -m pkg.train
    deps:
      - data/split
      - src/pkg/train.py
    params:
      - train
      - tuning.yaml:
          - grid
"""


def git(*args: str) -> str:
    return subprocess.run([*GIT, *args], check=True, capture_output=True, text=True).stdout


def test_inputs_are_what_dvc_yaml_declares() -> None:
    assert changed.inputs(yaml.safe_load(PIPELINE)) == {
        "dvc.yaml",
        "dvc.lock",
        "data/split",
        "src/pkg/train.py",
        "params.yaml",
        "tuning.yaml",
    }


def test_the_projects_own_pipeline_reads_its_stage_code_and_params() -> None:
    watched = changed.inputs(yaml.safe_load((ROOT / "dvc.yaml").read_text()))
    assert {"params.yaml", "data/raw.csv", "data/schema.yaml", "dvc.lock"} <= watched
    paths = ["README.md", "deploy/overlays/production/deployment.yaml", ".github/workflows/ci.yml"]
    assert changed.touched(paths, watched) == []
    assert changed.touched(["data/raw.csv.dvc", "params.yaml"], watched) == [
        "data/raw.csv.dvc",
        "params.yaml",
    ]


@pytest.mark.parametrize(
    ("path", "trains"),
    [
        ("README.md", False),
        ("src/pkg/service.py", False),
        ("src/pkg/train.py", True),
        ("data/split/train.parquet", True),  # inside a watched folder
        ("data/splits.md", False),  # a sibling whose name starts the same
        ("tuning.yaml", True),
        ("data/new.csv.dvc", True),  # a new DVC-tracked input
        ("dvc.lock", True),
    ],
)
def test_touched(path: str, trains: bool) -> None:
    watched = changed.inputs(yaml.safe_load(PIPELINE))
    assert (changed.touched([path], watched) == [path]) is trains


@pytest.fixture
def repo(workdir: Path) -> Path:
    git("init", "--quiet", "--initial-branch=main")
    Path("dvc.yaml").write_text(PIPELINE)
    Path("README.md").write_text("# project\n")
    git("add", "-A")
    git("commit", "--quiet", "-m", "start")
    git("switch", "--quiet", "--create", "change")
    return workdir


def test_main_answers_in_the_log_and_in_the_step_outputs(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = repo / "outputs"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    Path("README.md").write_text("# project, documented\n")
    git("commit", "--quiet", "-am", "docs")
    changed.main(["--base", "main"])
    assert "nothing to train" in capsys.readouterr().out
    Path("src/pkg").mkdir(parents=True)
    Path("src/pkg/train.py").write_text("print('trained')\n")
    git("add", "-A")
    git("commit", "--quiet", "-m", "code")
    git("switch", "--quiet", "main")  # main moves on: only this branch's changes count
    Path("params.yaml").write_text("train: {}\n")
    git("add", "-A")
    git("commit", "--quiet", "-m", "main moves")
    git("switch", "--quiet", "change")
    changed.main(["--base", "main"])
    assert capsys.readouterr().out.strip().endswith("changed since main: src/pkg/train.py")
    assert outputs.read_text() == "pipeline=false\npipeline=true\n"


def test_an_unknown_base_is_one_line(repo: Path) -> None:
    with pytest.raises(UserError, match=r"^cannot compare with 'nope': .*fetch-depth: 0"):
        changed.main(["--base", "nope"])
