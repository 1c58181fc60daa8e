"""Hooks tier: each invalid answer stops generation with one line naming the answer and the rule."""

import subprocess
from pathlib import Path

import pytest
from conftest import TEMPLATE, Bake

INVALID = [
    (
        {"project": "Tumor_Classifier"},
        "ERROR: project='Tumor_Classifier': must be a DNS-1123 label",
    ),
    ({"project": "-tumor"}, "ERROR: project='-tumor': must be a DNS-1123 label"),
    ({"project": "a" * 41}, f"ERROR: project='{'a' * 41}': must be a DNS-1123 label"),
    ({"project": "1tumor"}, "ERROR: package='1tumor' (from project): must be a Python identifier"),
    ({"project": "class"}, "ERROR: package='class' (from project): must be a Python identifier"),
    ({"project": "mlflow"}, "ERROR: package='mlflow' (from project): must be a Python identifier"),
    ({"github_owner": "-org"}, "ERROR: github_owner='-org': must be a GitHub user or organisation"),
    (
        {"github_owner": "my--org"},
        "ERROR: github_owner='my--org': must be a GitHub user or organisation",
    ),
    ({"github_owner": "o" * 40}, f"ERROR: github_owner='{'o' * 40}': must be a GitHub user"),
    ({"python_version": "3.10"}, "ERROR: python_version='3.10': must be one of 3.11, 3.12, 3.13"),
    ({"dvc_remote": "hdfs"}, "ERROR: dvc_remote='hdfs': must be one of local, s3, gs, azure"),
    ({"description": 'say "hi"'}, "ERROR: description='say \"hi\"': must be one non-empty line"),
    ({"name": " ", "project": "x"}, "ERROR: name=' ': must be one non-empty line"),
]


@pytest.mark.parametrize(("answers", "message"), INVALID)
def test_invalid_answer_fails_with_one_line(tmp_path: Path, answers: dict, message: str) -> None:
    args = [f"{key}={value}" for key, value in answers.items()]
    result = subprocess.run(
        ["cookiecutter", "--no-input", "--output-dir", str(tmp_path), str(TEMPLATE), *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    first_line = (result.stderr or result.stdout).splitlines()[0]
    assert first_line.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_several_invalid_answers_get_one_line_each(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(tmp_path),
            str(TEMPLATE),
            "project=Bad",
            "python_version=2.7",
        ],
        capture_output=True,
        text=True,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors[:2] == [
        "ERROR: project='Bad': must be a DNS-1123 label of at most 40 characters "
        "(lowercase letters, digits and '-', starting and ending with a letter or digit)",
        "ERROR: python_version='2.7': must be one of 3.11, 3.12, 3.13",
    ]


@pytest.mark.parametrize(
    "answers",
    [
        {"project": "a" * 40},
        {"project": "x9"},
        {"github_owner": "My-Org-9"},
        {"github_owner": "o" * 39},
        {"python_version": "3.13", "dvc_remote": "azure"},
    ],
)
def test_valid_edge_answers_bake(bake: Bake, answers: dict) -> None:
    assert (bake(**answers) / "pyproject.toml").is_file()
