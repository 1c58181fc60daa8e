"""`make doctor`: each missing GitHub setting is named with what to do."""

import json
from pathlib import Path

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import doctor

COMPLETE = {
    "AWS_ROLE_ARN": "arn:aws:iam::1:role/dvc",
    "AWS_REGION": "eu-west-1",
    "BOT_APP_ID": "12",
}


def test_remote_kind_comes_from_the_dvc_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://bucket/project\n")
    assert doctor.remote_kind(config) == "s3"
    config.write_text("[core]\n    remote = local\n['remote \"local\"']\n    url = ~/dvc\n")
    assert doctor.remote_kind(config) == "local"


def test_nothing_missing() -> None:
    assert doctor.problems("s3", COMPLETE, {"BOT_PRIVATE_KEY"}) == []


@pytest.mark.parametrize(
    ("kind", "variables", "secrets", "missing"),
    [
        ("local", COMPLETE, {"BOT_PRIVATE_KEY"}, "the DVC remote is a local directory"),
        ("s3", {**COMPLETE, "AWS_ROLE_ARN": ""}, {"BOT_PRIVATE_KEY"}, "AWS_ROLE_ARN is not set"),
        ("gs", COMPLETE, {"BOT_PRIVATE_KEY"}, "GCP_WORKLOAD_IDENTITY_PROVIDER is not set"),
        ("azure", COMPLETE, {"BOT_PRIVATE_KEY"}, "AZURE_TENANT_ID is not set"),
        (
            "s3",
            {k: v for k, v in COMPLETE.items() if k != "BOT_APP_ID"},
            {"BOT_PRIVATE_KEY"},
            "BOT_APP_ID",
        ),
        ("s3", COMPLETE, set(), "secret BOT_PRIVATE_KEY is not set"),
    ],
)
def test_each_missing_setting_is_named(
    kind: str, variables: dict[str, str], secrets: set[str], missing: str
) -> None:
    assert any(missing in problem for problem in doctor.problems(kind, variables, secrets))


def test_branch_rules() -> None:
    assert doctor.protection_problems(["pull_request", "required_status_checks"]) == []
    assert len(doctor.protection_problems(["deletion"])) == 2


def test_main_lists_what_is_missing_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text(
        "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://b/p\n"
    )
    monkeypatch.setenv("VARS", json.dumps({"AWS_REGION": "eu-west-1"}))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(UserError, match="3 setting"):
        doctor.main([])
    out = capsys.readouterr().out
    assert "missing: repository variable AWS_ROLE_ARN is not set" in out
    monkeypatch.setenv("VARS", json.dumps(COMPLETE))
    monkeypatch.setenv("HAS_BOT_PRIVATE_KEY", "true")
    doctor.main([])
    assert "every setting the workflows need is in place" in capsys.readouterr().out
