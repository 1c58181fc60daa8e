"""Project tier (slow): the make targets CI uses succeed in one baked, installed project."""

from pathlib import Path

import pytest
from conftest import run

pytestmark = pytest.mark.slow


def test_setup_writes_the_lock_and_the_git_hook(project: Path) -> None:
    assert (project / "uv.lock").is_file()
    assert (project / ".venv").is_dir()
    assert (project / ".git/hooks/pre-commit").is_file()


def test_lint_passes_on_a_fresh_bake(project: Path) -> None:
    run(["make", "lint"], project)


def test_tests_pass_on_a_fresh_bake(project: Path) -> None:
    result = run(["make", "test"], project)
    assert " passed" in result.stdout
