"""Keep the files of the chosen options, make the first commit and print the next commands."""

import json
import re
import shutil
import subprocess
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# Files that belong to one answer of an option: the files of every other answer are removed.
# Options switch whole files; no file is partly rendered for an option.
VARIANTS: dict[str, dict[str, list[str]]] = {}


def prune(answers: dict[str, str], root: Path) -> None:
    """Remove the files of every answer not chosen."""
    for option, files_by_answer in VARIANTS.items():
        for answer, paths in files_by_answer.items():
            if answer == answers[option]:
                continue
            for path in paths:
                target = root / path
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)


# The template's Python modules are plain Python written against the default package name;
# this renames it, so no Jinja ever enters a Python file.
TEMPLATE_PACKAGE = "tumor_classifier"


def rename_package(package: str, root: Path) -> None:
    """Point every import of the template's package at the project's package."""
    if package == TEMPLATE_PACKAGE:
        return
    word = re.compile(rf"\b{TEMPLATE_PACKAGE}\b")
    for path in root.rglob("*.py"):
        text = path.read_text()
        if word.search(text):
            path.write_text(word.sub(package, text))


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def first_commit(answers: dict[str, str]) -> bool:
    """Start the repository with one commit; False when git is not installed."""
    if shutil.which("git") is None:
        return False
    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    identity = []
    if subprocess.run(["git", "config", "user.email"], capture_output=True).returncode != 0:
        email = f"{answers['github_owner']}@users.noreply.github.com"
        identity = ["-c", f"user.name={answers['author']}", "-c", f"user.email={email}"]
    git(*identity, "commit", "--quiet", "--no-verify", "--message", "Start from the MLOps template")
    return True


if __name__ == "__main__":
    prune(ANSWERS, Path.cwd())
    rename_package(ANSWERS["__package"], Path.cwd())
    committed = first_commit(ANSWERS)
    print(
        f"\nCreated {ANSWERS['project']}{' with a first git commit' if committed else ''}. Next:\n"
    )
    print(f"  cd {ANSWERS['project']}")
    print("  make setup    # locked environment, git hooks, example data in the DVC cache")
    print("  make train    # the pipeline on the example data: dvc repro\n")
