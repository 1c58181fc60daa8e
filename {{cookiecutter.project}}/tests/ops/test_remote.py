"""`make pull`, `make push`, `make status`: transfers and state, checked on a real repository."""

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
        config["remote"][remote.QUARANTINE] = {"url": str(tmp_path / "pr"), "verify": True}
        config["core"]["remote"] = "storage"
    (project / "data.csv").write_text("a,b\n1,2\n")
    dvc.add("data.csv")
    return project


@pytest.fixture
def trained(project: Path) -> Path:
    """The project with a one-stage pipeline, run: out.csv (data.csv upside down) is its output."""
    dvc = Repo(project)
    dvc.stage.add(name="flip", deps=["data.csv"], outs=["out.csv"], cmd="tac data.csv > out.csv")
    dvc.reproduce()
    return project


def lose_local_copies(project: Path) -> None:
    for path in ("data.csv", "out.csv"):
        (project / path).unlink(missing_ok=True)
    shutil.rmtree(project / ".dvc/cache", ignore_errors=True)


def test_push_then_pull_after_losing_everything_locally(project: Path) -> None:
    remote.push(Repo(project), None)
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
        remote.push(Repo(project), None)


def test_an_empty_remote_says_to_push_once(project: Path) -> None:
    lose_local_copies(project)
    with pytest.raises(
        UserError,
        match=r"^the remote has no copy of data\.csv: if it is empty, run `make push` once",
    ):
        remote.pull(Repo(project))


def test_what_a_pull_request_pushed_is_pulled_from_the_quarantine_then_pushed_to_the_remote(
    trained: Path, tmp_path: Path
) -> None:
    remote.push(Repo(trained), None)  # main's data, already released
    (trained / "data.csv").write_text("a,b\n1,2\n3,4\n")  # a pull request changes it...
    Repo(trained).reproduce()
    remote.push(Repo(trained), remote.QUARANTINE)  # ...and may only push to the quarantine
    assert Repo(trained).status(cloud=True, remote="storage")  # the remote lacks its outputs
    lose_local_copies(trained)
    remote.pull(Repo(trained))  # the release: the remote first, then the quarantine
    assert (trained / "out.csv").read_text() == "3,4\n1,2\na,b\n"
    remote.status(Repo(trained))
    remote.push(Repo(trained), None)
    assert Repo(trained).status(cloud=True, remote="storage") == {}


def test_an_object_that_does_not_match_dvc_lock_is_refused(trained: Path, tmp_path: Path) -> None:
    remote.push(Repo(trained), None)
    (trained / "data.csv").write_text("a,b\n1,2\n3,4\n")
    Repo(trained).reproduce()
    remote.push(Repo(trained), remote.QUARANTINE)
    (poisoned,) = [
        path
        for path in (tmp_path / "pr").rglob("*")
        if path.is_file() and path.read_text() == "3,4\n1,2\na,b\n"  # out.csv
    ]
    poisoned.chmod(0o644)
    poisoned.write_text("6,6\na,b\n")
    lose_local_copies(trained)
    with pytest.raises(UserError, match=r"^neither remote holds out\.csv as dvc\.lock records"):
        remote.pull(Repo(trained))
    assert not (trained / "out.csv").exists()


def test_status_names_each_stage_and_what_changed(trained: Path) -> None:
    remote.status(Repo(trained))
    (trained / "data.csv").write_text("a,b\n9,9\n")
    with pytest.raises(UserError, match=r"^dvc.lock does not describe this commit: ") as error:
        remote.status(Repo(trained))
    assert "data.csv.dvc (changed outs data.csv modified)" in str(error.value)
    assert "flip (changed deps data.csv modified)" in str(error.value)
    (trained / "out.csv").unlink()
    (trained / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"flip \(changed outs out.csv deleted\)"):
        remote.status(Repo(trained))


def test_a_pull_never_overwrites_an_output_that_no_cache_holds(trained: Path) -> None:
    remote.push(Repo(trained), None)
    shutil.rmtree(trained / ".dvc/cache")
    (trained / "out.csv").write_text("edited by hand\n")
    with pytest.raises(UserError, match=r"^dvc checkout refused: Can't remove .*out\.csv"):
        remote.pull(Repo(trained))
    assert (trained / "out.csv").read_text() == "edited by hand\n"
