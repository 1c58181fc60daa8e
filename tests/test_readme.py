"""The README's first screen is the two commands, and its option table is cookiecutter.json."""

import re

from conftest import DEFAULTS, PROMPTS, TEMPLATE

README = (TEMPLATE / "README.md").read_text()


def test_first_screen_is_the_two_commands() -> None:
    first_block = README.split("```")[1].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]
    assert README.index("make demo") < 1000


def test_two_commands_are_make_targets_and_ci_runs_the_test_one() -> None:
    makefile = (TEMPLATE / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (TEMPLATE / ".ci/run").read_text()


def test_option_table_matches_cookiecutter_json() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (.+?) \|", README, flags=re.MULTILINE))
    assert list(rows) == PROMPTS
    assert len(PROMPTS) <= 7
    for key, shown in rows.items():
        default = DEFAULTS[key]
        if "{{" not in default:
            assert shown == f"`{default}`", key
