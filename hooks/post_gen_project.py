"""Keep the chosen options' files, lock the environment, make the first commit, say what next."""

import json
import re
import shutil
import subprocess
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# The one table of files that depend on an answer: the template holds one whole file per answer,
# named <stem>.<answer><suffix>; the chosen one takes the plain name and the others go.
SWITCHED = {".github/actions/dvc-remote/action.yml": "dvc_remote"}


def switch(answers: dict[str, str], root: Path) -> None:
    """Keep, for each switched file, the variant of the chosen answer."""
    for target, option in SWITCHED.items():
        path = root / target
        for variant in path.parent.glob(f"{path.stem}.*{path.suffix}"):
            answer = variant.name[len(path.stem) + 1 : -len(path.suffix)]
            if answer == answers[option]:
                variant.rename(path)
            else:
                variant.unlink()


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


def lock() -> str:
    """Write uv.lock so the first commit pins the environment; empty, or why it could not."""
    uv = shutil.which("uv")
    if uv is None:
        return "uv is not installed"
    # From the index when it is reachable; else from uv's cache, when it holds every package.
    for offline in ([], ["--offline"]):
        done = subprocess.run([uv, "lock", "--quiet", *offline], capture_output=True, text=True)
        if done.returncode == 0:
            return ""
    return "no package index and no cache of it"


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
    switch(ANSWERS, Path.cwd())
    rename_package(ANSWERS["__package"], Path.cwd())
    unlocked = lock()
    committed = first_commit(ANSWERS)
    if unlocked:
        print(
            f"\nuv.lock is not written ({unlocked}): where PyPI is reachable, run "
            "`uv lock && git add uv.lock && git commit -m 'Lock the environment'`"
        )
    print(
        f"\nCreated {ANSWERS['project']}{' with a first git commit' if committed else ''}. Next:\n"
    )
    print(f"  cd {ANSWERS['project']}")
    print("  make setup    # locked environment, git hooks, example data in the DVC cache")
    print("  make train    # the pipeline on the example data: dvc repro\n")
