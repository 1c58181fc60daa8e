"""Template updates: a project baked from an older template takes the newer one with cruft."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import OFFLINE, TEMPLATE, git, run


def cruft(cwd: Path, *args: str, check: bool = True) -> int:
    # The hook of each render locks nothing here: the updates are the test, not the lock.
    return run(["cruft", *args], cwd, check=check, env=OFFLINE).returncode


def create(template: Path, commit: str, into: Path) -> Path:
    """`cruft create` at a commit, then the project's own first commit of .cruft.json."""
    cruft(into, "create", "--no-input", "--checkout", commit, str(template))
    project = into / "tumor-classifier"
    git(project, "add", ".cruft.json")
    git(project, "commit", "--quiet", "--message", "Record the template")
    return project


def conflicts(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in project.rglob("*.rej"))


def test_an_update_lands_template_changes_beside_the_teams_own(tmp_path: Path) -> None:
    # A template with two commits: this one, and a later one changing files a project keeps.
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE, template, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*cache*")
    )
    git(template, "init", "--quiet")
    git(template, "add", "--all", "--force")
    git(template, "commit", "--quiet", "--message", "older")
    older = git(template, "rev-parse", "HEAD").strip()
    inner = template / "{{cookiecutter.project}}"
    readme, makefile = inner / "README.md", inner / "Makefile"
    readme.write_text(readme.read_text() + "\nA note the template added later.\n")
    makefile.write_text(makefile.read_text().replace("# Checks.", "# Checks, as CI runs them."))
    git(template, "commit", "--quiet", "--all", "--message", "newer")

    project = create(template, older, tmp_path)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("test_size: 0.2", "test_size: 0.25"))
    (project / "NOTES.md").write_text("The team's own file.\n")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "The team's changes")

    assert cruft(project, "check", check=False) == 1
    cruft(project, "update", "--skip-apply-ask", "--checkout", "HEAD")
    assert conflicts(project) == []
    assert (project / "README.md").read_text().endswith("A note the template added later.\n")
    assert "# Checks, as CI runs them." in (project / "Makefile").read_text()
    assert "test_size: 0.25" in params.read_text()
    assert (project / "NOTES.md").read_text() == "The team's own file.\n"
    assert json.loads((project / ".cruft.json").read_text())["commit"] != older
    assert cruft(project, "check", check=False) == 0


def test_an_older_commit_of_this_repository_updates_to_head_cleanly(tmp_path: Path) -> None:
    # The oldest commit whose projects carry cruft's settings (it skips their .git and dataset).
    found = git(
        TEMPLATE,
        "log",
        "--format=%H",
        "--reverse",
        "-S[tool.cruft]",
        "--",
        "{{cookiecutter.project}}/pyproject.toml",
    ).split()
    head = git(TEMPLATE, "rev-parse", "HEAD").strip()
    if not found or found[0] == head:
        pytest.skip("this clone holds no older commit with cruft settings (a shallow clone)")
    project = create(TEMPLATE, found[0], tmp_path)
    cruft(project, "update", "--skip-apply-ask", "--checkout", head)
    assert conflicts(project) == []
    assert git(project, "status", "--porcelain"), "the update changed no file"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == head
