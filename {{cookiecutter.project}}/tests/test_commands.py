"""The README documents exactly the make targets, so every command a reader sees is real."""

import re
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
