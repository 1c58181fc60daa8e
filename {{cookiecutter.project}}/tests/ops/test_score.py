"""`make score`: the ML Test Score counts only checks that exist."""

import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from tumor_classifier.cli import UserError
from tumor_classifier.ops import score


def sums(root: Path) -> dict[str, int]:
    return {s: sum(points for _, points, _ in rows) for s, rows in score.score(root).items()}


def test_the_project_scores_at_least_five_in_every_section() -> None:
    assert sums(ROOT) == {"data": 5, "model": 5, "infrastructure": 7, "monitoring": 7}
    assert sum(len(items) for items in score.SECTIONS.values()) == 28


def test_manual_items_say_why() -> None:
    for items in score.SECTIONS.values():
        for item in items:
            assert bool(item.checks) != bool(item.manual), item.id


def test_the_readme_gives_each_manual_item_its_reason() -> None:
    readme = (ROOT / "README.md").read_text()
    for items in score.SECTIONS.values():
        for item in items:
            if item.manual:
                assert f"| {item.id} {item.title} | {item.manual} |" in readme, item.id


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for folder in ("tests", ".github", "deploy"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def test_a_missing_check_costs_its_point(copy: Path) -> None:
    (copy / ".github/dependabot.yml").unlink()
    gate = copy / "tests/pipeline/test_gate.py"
    gate.write_text(gate.read_text().replace('@pytest.mark.score("M6")\n', ""))
    assert sums(copy) == {"data": 5, "model": 4, "infrastructure": 7, "monitoring": 6}
    rows = {item.id: missing for rows in score.score(copy).values() for item, _, missing in rows}
    assert rows["M6"] == ["test:M6"]
    assert rows["Mon1"] == ["file:.github/dependabot.yml"]


def test_minimum(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    score.main(["--minimum", "5"])
    assert capsys.readouterr().out.endswith("ML Test Score: 5 (the lowest section)\n")
    with pytest.raises(UserError, match="ML Test Score 5 is below 6"):
        score.main(["--minimum", "6"])
