"""`make pull` / `make push`: DVC transfers whose result is checked, on a real repository."""

import shutil
import subprocess
from pathlib import Path

import pytest
from dvc.repo import Repo

from tumor_classifier.cli import UserError
from tumor_classifier.ops import remote


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git and DVC repository with one tracked file and a local remote. Each `make pull` or
    `make push` is a process of its own: each step below opens the repository afresh."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    subprocess.run(["git", "init", "--quiet"], cwd=project, check=True)
    dvc = Repo.init(str(project))
    with dvc.config.edit() as config:
        config["remote"]["storage"] = {"url": str(tmp_path / "remote")}
        config["core"]["remote"] = "storage"
    (project / "data.csv").write_text("a,b\n1,2\n")
    dvc.add("data.csv")
    return project


def test_push_then_pull_after_losing_everything_locally(project: Path) -> None:
    remote.push(Repo(project))
    (project / "data.csv").unlink()
    shutil.rmtree(project / ".dvc/cache")
    remote.pull(Repo(project))
    assert (project / "data.csv").read_text() == "a,b\n1,2\n"


def test_pull_names_what_never_reached_the_remote(project: Path) -> None:
    (project / "data.csv").unlink()
    shutil.rmtree(project / ".dvc/cache")
    with pytest.raises(UserError, match=r"data\.csv"):
        remote.pull(Repo(project))


def test_push_names_what_the_remote_lacks(project: Path) -> None:
    shutil.rmtree(project / ".dvc/cache")
    with pytest.raises(UserError, match=r"data\.csv"):
        remote.push(Repo(project))
