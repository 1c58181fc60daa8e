"""Workflows tier: every baked variant's workflows lint clean and follow the security rules."""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEMPLATE, bake_into

DVC_REMOTES = ["local", "s3", "gs", "azure"]
# Verified release pins (commit SHA and tag) of every action the workflows may use. None of them
# runs on a removed Node version: setup-cml, setup-dvc (node16) and setup-kustomize (node20) are
# deliberately absent.
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "actions/create-github-app-token": ("1b10c78c7865c340bc4f6099eb2f838309f1e8c3", "v3.1.1"),
    "actions/attest": ("1e69f48acb82d1966a394da916b4c1698aa569d6", "v4.2.2"),
    "astral-sh/setup-uv": ("20cfd1bf945f4377ade1205e4dbc17946fc9a30d", "v10.0.1"),
    "docker/login-action": ("4907a6ddec9925e35a0a9e82d7399ccc52663121", "v4.1.0"),
    "docker/setup-buildx-action": ("37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0"),
    "sigstore/cosign-installer": ("6f9f17788090df1f26f669e9d70d6ae9567deba6", "v4.1.2"),
    "anchore/sbom-action": ("e22c389904149dbc22b58101806040fa8d37a610", "v0.24.0"),
    "aquasecurity/trivy-action": ("ed142fd0673e97e23eac54620cfb913e5ce36c25", "v0.36.0"),
    "peter-evans/create-pull-request": ("5f6978faf089d4d20b00c7766989d076bb2fc7f1", "v8.1.1"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
    "Azure/login": ("f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca", "v3.0.1"),
}
USES = re.compile(r"^\s*-?\s*uses:\s*(\S+)(.*)$", re.MULTILINE)
# The only secrets the workflows read: the two GitHub Apps' keys and an optional tracking-server
# token.
SECRETS = {"BOT_PRIVATE_KEY", "DEPLOY_PRIVATE_KEY", "MLFLOW_TRACKING_TOKEN"}


@pytest.fixture(scope="module", params=DVC_REMOTES)
def github(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .github folder of a project baked with each kind of DVC remote."""
    project = bake_into(tmp_path_factory.mktemp(request.param), dvc_remote=request.param)
    return project / ".github"


def workflows(github: Path) -> dict[str, dict[Any, Any]]:
    return {
        path.name: yaml.safe_load(path.read_text())
        for path in sorted(github.glob("workflows/*.yml"))
    }


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_actionlint_and_zizmor_report_nothing(github: Path) -> None:
    for command in (["actionlint"], ["zizmor", "--offline", "--no-progress", "."]):
        result = subprocess.run(command, cwd=github.parent, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_by_sha_with_its_tag(github: Path) -> None:
    for path in github.rglob("*.yml"):
        for target, rest in USES.findall(path.read_text()):
            if target.startswith("$/"):
                assert (github.parent / target[2:] / "action.yml").is_file(), target
                continue
            action, _, sha = target.partition("@")
            assert PINS.get(action) == (sha, rest.strip().removeprefix("# ")), (
                f"{path.name}: {target}"
            )


def test_permissions_timeouts_and_concurrency_everywhere(github: Path) -> None:
    for name, workflow in workflows(github).items():
        assert workflow["permissions"] == {}, name
        assert "pull_request_target" not in workflow[True], name  # YAML reads `on:` as True
        for job_name, job in workflow["jobs"].items():
            where = f"{name}: {job_name}"
            assert "permissions" in job, where
            assert 0 < job["timeout-minutes"] <= 60, where
            assert (job.get("concurrency") or workflow["concurrency"])["group"], where


def test_untrusted_values_reach_the_shell_only_through_env(github: Path) -> None:
    for name, workflow in workflows(github).items():
        for step in steps(workflow):
            assert "${{" not in step.get("run", ""), f"{name}: {step['run']}"


def test_run_steps_are_make_targets_or_a_few_lines(github: Path) -> None:
    makefile = (github.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.MULTILINE))
    for name, workflow in workflows(github).items():
        for step in steps(workflow):
            script = step.get("run", "")
            assert script.count("\n") <= 3, f"{name}: {script}"
            for target in re.findall(r"\bmake ([a-z][a-z0-9-]*)", script):
                assert target in targets, f"{name}: make {target}"


def test_checkouts_keep_no_credentials(github: Path) -> None:
    for name, workflow in workflows(github).items():
        for step in steps(workflow):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_release_builds_without_caches_and_deploys_only_what_was_scanned_and_signed(
    github: Path,
) -> None:
    release = workflows(github)["release.yml"]
    for step in steps(release):
        if step.get("uses") == "$/.github/actions/setup":
            assert step["with"]["cache"] == "false"
        assert not step.get("uses", "").startswith("actions/cache@")
    assert set(release["jobs"]["deploy"]["needs"]) == {"build", "scan", "sign"}
    assert set(release["jobs"]["register"]["needs"]) == {"build", "scan", "sign"}
    assert "deploy/overlays/**" in release[True]["push"]["paths-ignore"]  # its own commit


def test_no_long_lived_keys(github: Path) -> None:
    text = "\n".join(path.read_text() for path in github.rglob("*.yml"))
    assert set(re.findall(r"secrets\.([A-Z_]+)", text)) <= SECRETS
    for key_input in ("aws-access-key-id", "aws-secret-access-key", "credentials_json", "creds:"):
        assert key_input not in text


def test_remote_credentials_match_the_answer(github: Path) -> None:
    action = (github / "actions/dvc-remote/action.yml").read_text()
    kind = {
        "local": "::error",
        "s3": "aws-actions",
        "gs": "google-github-actions",
        "azure": "Azure/login",
    }
    remote = (github.parent / ".dvc/config").read_text().split("remote = ")[1].split()[0]
    assert kind[remote] in action
    assert list((github / "actions/dvc-remote").iterdir()) == [
        github / "actions/dvc-remote/action.yml"
    ]


def test_dependabot_updates_each_ecosystem_after_a_cooldown(github: Path) -> None:
    updates = yaml.safe_load((github / "dependabot.yml").read_text())["updates"]
    assert {u["package-ecosystem"] for u in updates} == {"uv", "github-actions", "docker"}
    assert all(u["cooldown"]["default-days"] >= 3 for u in updates)
    docker = next(u for u in updates if u["package-ecosystem"] == "docker")
    assert (github.parent / docker["directory"].lstrip("/") / "Dockerfile").is_file()


def test_the_template_own_ci_passes_the_same_checks() -> None:
    github = TEMPLATE / ".github"
    for rule in (
        test_actionlint_and_zizmor_report_nothing,
        test_every_action_is_pinned_by_sha_with_its_tag,
        test_permissions_timeouts_and_concurrency_everywhere,
        test_untrusted_values_reach_the_shell_only_through_env,
        test_run_steps_are_make_targets_or_a_few_lines,
        test_checkouts_keep_no_credentials,
    ):
        rule(github)
    # The end-to-end job is `make e2e`, on a GitHub-hosted runner, where Docker runs.
    e2e = workflows(github)["ci.yml"]["jobs"]["e2e"]
    assert e2e["runs-on"].startswith("ubuntu-")
    assert [step["run"] for step in e2e["steps"] if "run" in step] == ["make e2e"]
