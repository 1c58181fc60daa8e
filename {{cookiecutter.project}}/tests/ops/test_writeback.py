"""`make deploy`: the release's write-back lands once, on the newest main, whatever main does."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import overlays, writeback

from conftest import ROOT

DIGEST = "sha256:" + "ab12" * 16
IMAGE = f"ghcr.io/example-org/model@{DIGEST}"
IDENTITY = {"user.name": "Release", "user.email": "release@example.org", "commit.gpgsign": "false"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def clone(origin: Path, into: Path) -> Path:
    git(origin.parent, "clone", "--quiet", str(origin), str(into))
    for key, value in IDENTITY.items():
        git(into, "config", key, value)
    return into


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository standing in for GitHub, whose main holds what `make deploy` reads."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "--quiet", "--initial-branch=main")
    for key, value in IDENTITY.items():
        git(seed, "config", key, value)
    for folder in ("deploy", "argocd"):
        shutil.copytree(ROOT / folder, seed / folder)
    shutil.copy(ROOT / "params.yaml", seed / "params.yaml")
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "--message", "start")
    git(seed, "push", "--quiet", str(origin), "main")
    return origin


@pytest.fixture
def release(origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The release job's checkout, where `make deploy` runs."""
    monkeypatch.chdir(clone(origin, tmp_path / "release"))
    return Path.cwd()


def merge(origin: Path, into: Path, name: str) -> None:
    """Another pull request lands on main: a teammate's clone pushes a commit."""
    if not into.exists():
        clone(origin, into)
    git(into, "pull", "--quiet", "origin", "main")
    (into / f"{name}.md").write_text(f"{name}\n")
    git(into, "add", "--all")
    git(into, "commit", "--quiet", "--message", name)
    git(into, "push", "--quiet", "origin", "main")


def history(origin: Path) -> list[str]:
    return git(origin, "log", "--format=%s", "main").splitlines()


def deploys(release: Path) -> str:
    return writeback.write_back("staging", IMAGE, "origin", "main", attempts=3, wait=0)


def test_the_image_lands_as_one_commit_of_one_line(origin: Path, release: Path) -> None:
    assert deploys(release) == f"pushed deploy(staging) to main: {IMAGE}"
    assert history(origin) == [f"deploy(staging): {DIGEST}", "start"]
    diff = git(origin, "show", "--format=", "--unified=0", "main")
    assert [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ] == [
        f"-          image: {overlays.image_of(ROOT / overlays.OVERLAYS, 'staging')}",
        f"+          image: {IMAGE}",
    ]


def test_a_rerun_of_a_finished_release_commits_nothing(origin: Path, release: Path) -> None:
    deploys(release)
    assert deploys(release) == f"main already deploys {IMAGE} to staging: nothing to commit"
    assert history(origin) == [f"deploy(staging): {DIGEST}", "start"]


def test_merges_during_the_build_are_kept(origin: Path, release: Path, tmp_path: Path) -> None:
    merge(origin, tmp_path / "teammate", "merged while the image built")
    deploys(release)
    assert history(origin) == [
        f"deploy(staging): {DIGEST}",
        "merged while the image built",
        "start",
    ]


def teammate_pushes_first(release: Path, origin: Path, tmp_path: Path, script: str) -> None:
    """Before each push of the release clone, a teammate's clone runs script (a merge to main)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = hooks / "pre-push"
    # The hook's git variables name the release clone: unset, so script's git is the teammate's.
    hook.write_text("#!/bin/sh\nunset $(git rev-parse --local-env-vars)\n" + script)
    hook.chmod(0o755)
    clone(origin, tmp_path / "teammate")
    git(release, "config", "core.hooksPath", str(hooks))


def test_a_merge_racing_the_push_is_retried_and_lands_once(
    origin: Path, release: Path, tmp_path: Path
) -> None:
    # Between the fetch and the push, once, another merge reaches main.
    teammate_pushes_first(
        release,
        origin,
        tmp_path,
        f'[ -e "{tmp_path}/raced" ] && exit 0\n'
        f'touch "{tmp_path}/raced"\n'
        f'cd "{tmp_path}/teammate" && git pull --quiet origin main && echo raced > raced.md && '
        "git add raced.md && git commit --quiet -m 'merged during the push' && "
        "git push --quiet origin main\n",
    )
    deploys(release)
    assert history(origin) == [f"deploy(staging): {DIGEST}", "merged during the push", "start"]


def test_main_that_keeps_moving_fails_in_one_line(
    origin: Path, release: Path, tmp_path: Path
) -> None:
    teammate_pushes_first(
        release,
        origin,
        tmp_path,
        f'cd "{tmp_path}/teammate" && git pull --quiet origin main && date +%s%N > busy.md && '
        "git add busy.md && git commit --quiet -m busy && git push --quiet origin main\n",
    )
    with pytest.raises(UserError, match=r"^main kept moving: 3 pushes lost the race"):
        deploys(release)
    assert f"deploy(staging): {DIGEST}" not in history(origin)


def test_a_refused_push_is_not_retried(origin: Path, release: Path) -> None:
    hook = origin / "hooks/pre-receive"
    hook.write_text(
        "#!/bin/sh\necho 'GH013: Repository rule violations found for refs/heads/main' >&2\n"
        "exit 1\n"
    )
    hook.chmod(0o755)
    with pytest.raises(UserError, match=r"^the push to main was refused: .*GH013"):
        deploys(release)


def test_uncommitted_work_is_never_thrown_away(release: Path) -> None:
    overlay = release / overlays.OVERLAYS / "staging/kustomization.yaml"
    overlay.write_text(overlay.read_text() + "# local edit\n")
    with pytest.raises(UserError, match=r"^the work tree has uncommitted changes"):
        deploys(release)
    assert overlay.read_text().endswith("# local edit\n")
