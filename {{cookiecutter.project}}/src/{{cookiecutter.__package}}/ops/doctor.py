"""`make doctor`: the one-time GitHub settings the workflows need; each missing one, with its fix.

The doctor workflow passes the repository's variables (VARS, as JSON), whether each secret is set
(HAS_<NAME>) and a read-only token; run locally, it checks what it can and lists the rest.
"""

import argparse
import configparser
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from .. import cli

# Variables the OIDC login of each kind of DVC remote reads (.github/actions/dvc-remote).
REMOTE_VARIABLES = {
    "s3": ["AWS_ROLE_ARN", "AWS_REGION"],
    "gs": ["GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_SERVICE_ACCOUNT"],
    "azure": ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID"],
}


def remote_kind(config: Path) -> str:
    """local, s3, gs or azure: the scheme of the default DVC remote's URL."""
    parser = configparser.ConfigParser()
    parser.read(config)
    name = parser.get("core", "remote", fallback="")
    url = parser.get(f"'remote \"{name}\"'", "url", fallback="")
    scheme = url.split("://")[0] if "://" in url else "local"
    return scheme


def problems(kind: str, variables: dict[str, str], secrets: set[str]) -> list[str]:
    """What is missing, each with what to do."""
    found = []
    if kind == "local":
        found.append(
            "the DVC remote is a local directory, which GitHub's runners cannot reach: "
            "move it to S3, GCS or Azure (README, 'DVC remote and GitHub settings')"
        )
    for name in REMOTE_VARIABLES.get(kind, []):
        if not variables.get(name):
            found.append(f"repository variable {name} is not set: the {kind} OIDC login needs it")
    if not variables.get("BOT_APP_ID"):
        found.append(
            "repository variable BOT_APP_ID is not set: the GitHub App that commits for CI"
        )
    if "BOT_PRIVATE_KEY" not in secrets:
        found.append("repository secret BOT_PRIVATE_KEY is not set: the GitHub App's private key")
    return found


def branch_rules(repository: str, token: str, branch: str = "main") -> list[str]:
    """The rule types GitHub enforces on the branch (readable with a read-only token)."""
    request = urllib.request.Request(
        f"https://api.github.com/repos/{repository}/rules/branches/{branch}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return [rule["type"] for rule in json.loads(response.read())]


def protection_problems(rules: list[str]) -> list[str]:
    found = []
    if "pull_request" not in rules:
        found.append("main accepts pushes without a pull request: add a ruleset requiring one")
    if "required_status_checks" not in rules:
        found.append(
            "main does not require checks: require `lint and test` and `train, report, gate`"
        )
    return found


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="doctor", description=__doc__)
    parser.parse_args(argv)
    variables = json.loads(os.environ.get("VARS") or "{}")
    secrets = {
        key.removeprefix("HAS_")
        for key, value in os.environ.items()
        if key.startswith("HAS_") and value == "true"
    }
    found = problems(remote_kind(Path(".dvc/config")), variables, secrets)
    repository, token = os.environ.get("GITHUB_REPOSITORY"), os.environ.get("GITHUB_TOKEN")
    if repository and token:
        try:
            found += protection_problems(branch_rules(repository, token))
        except urllib.error.URLError as error:
            found.append(f"could not read the rules of main ({error}): check them by hand")
    else:
        print("note: the rules of main are checked when the doctor workflow runs on GitHub")
    if not variables.get("MLFLOW_TRACKING_URI"):
        print("note: no MLFLOW_TRACKING_URI variable: CI tracks into a throwaway mlflow.db")
    for problem in found:
        print(f"missing: {problem}")
    if found:
        raise cli.UserError(f"{len(found)} setting(s) to fix, listed above")
    print("doctor: every setting the workflows need is in place")


if __name__ == "__main__":
    cli.run(main)
