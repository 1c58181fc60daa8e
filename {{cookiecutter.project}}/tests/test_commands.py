"""The make targets: the README documents exactly them, and they refuse bad input in one line."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):.*## ", text, flags=re.MULTILINE)) - {"help"}


def readme_targets() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `make ([a-z-]+)[^`]*` \|", text, flags=re.MULTILINE))


def test_every_target_is_documented_and_every_documented_target_exists() -> None:
    assert makefile_targets() == readme_targets()
    assert {"setup", "lint", "test"} <= makefile_targets()


def test_make_comment_says_in_one_line_what_it_lacks(tmp_path: Path) -> None:
    """Before CML is fetched: the report first, then the pull request's number."""
    makefile = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "comment"]
    missing_report = subprocess.run(makefile, cwd=tmp_path, capture_output=True, text=True)
    (tmp_path / "reports/pr").mkdir(parents=True)
    (tmp_path / "reports/pr/report.md").write_text("# Model report\n")
    missing_pr = subprocess.run(makefile, cwd=tmp_path, capture_output=True, text=True)
    for result, line in [
        (missing_report, "no reports/pr/report.md: run make report first"),
        (missing_pr, "PR is not set: make comment PR=<pull request number>"),
    ]:
        assert result.returncode != 0
        assert result.stderr.splitlines()[0] == line
    assert not (tmp_path / "build").exists()  # nothing was written for a comment not posted
