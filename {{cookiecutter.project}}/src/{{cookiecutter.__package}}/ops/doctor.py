"""`make doctor`: the one-time GitHub settings the workflows need; each missing one, with its fix.

The doctor workflow passes the repository's variables (VARS, as JSON), whether each secret is set
(HAS_<NAME>), the bot's private key and a read-only token; run locally, it checks what it can and
lists the rest. Each fact it checks is kept here once; the README's first-PR checklist agrees.
"""

import argparse
import base64
import configparser
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .. import cli

API = "https://api.github.com"
# The jobs a ruleset on main must require: ci.yml's and train.yml's, which report on every pull
# request and merge group (no path filter, no job-level `if`).
REQUIRED_CHECKS = ("lint and test", "train, report, gate")
# What each GitHub App must be granted on this repository: the bot opens and updates pull requests
# (template updates may change workflows); the deploy identity pushes the release's one commit.
APPS = {
    "BOT": {"contents": "write", "pull_requests": "write", "workflows": "write"},
    "DEPLOY": {"contents": "write"},
}
# The environment that holds the deploy identity's key; only main may use it.
ENVIRONMENT = "staging"
# The variables of each kind of DVC remote's OIDC logins (.github/actions/dvc-remote): a role that
# pull requests use (reads the remote, writes the `pr` remote) and one that only main can assume.
REMOTE_VARIABLES = {
    "s3": ["AWS_REGION", "AWS_PR_ROLE_ARN", "AWS_MAIN_ROLE_ARN"],
    "gs": ["GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_PR_SERVICE_ACCOUNT", "GCP_MAIN_SERVICE_ACCOUNT"],
    "azure": [
        "AZURE_TENANT_ID",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_PR_CLIENT_ID",
        "AZURE_MAIN_CLIENT_ID",
    ],
}
QUARANTINE = "pr"
# What a workflow skips, with a notice, until its variables are set.
OPTIONAL = {
    "MLFLOW_TRACKING_URI": "CI tracks into a throwaway mlflow.db and the release registers no "
    "model: set it (and the secret MLFLOW_TRACKING_TOKEN) to the team's MLflow server",
    "REQUEST_LOGS": "monitor.yml skips: set it to where `make current` finds the service's logs",
    "DATA_SOURCE": "retrain.yml skips: set it to where `make refresh` finds fresh data",
}
Json = dict[str, Any]


def remotes(config: Path) -> tuple[str, dict[str, dict[str, str]]]:
    """The default DVC remote's name, and every remote's settings (.dvc/config)."""
    parser = configparser.ConfigParser()
    parser.read(config)
    found = {
        section.split('"')[1]: dict(parser[section])
        for section in parser.sections()
        if section.startswith("'remote ")
    }
    return parser.get("core", "remote", fallback=""), found


def remote_kind(config: Path) -> str:
    """local, s3, gs or azure: the scheme of the default DVC remote's URL."""
    name, found = remotes(config)
    url = found.get(name, {}).get("url", "")
    return url.split("://")[0] if "://" in url else "local"


def problems(config: Path, variables: dict[str, str], secrets: set[str]) -> list[str]:
    """The settings CI cannot run without, each with what to do."""
    kind = remote_kind(config)
    found = []
    if kind == "local":
        found.append(
            "the DVC remote is a local directory, which GitHub's runners cannot reach: "
            "move it to S3, GCS or Azure (README, 'First pull request: the settings, once')"
        )
    found += [
        f"repository variable {name} is not set: the {kind} OIDC logins read it"
        for name in REMOTE_VARIABLES.get(kind, [])
        if not variables.get(name)
    ]
    default, settings = remotes(config)
    if QUARANTINE not in settings:
        found.append(
            f"no `{QUARANTINE}` remote in .dvc/config: pull requests push what they train there "
            f"(`uv run dvc remote add {QUARANTINE} <url>` and `dvc remote modify {QUARANTINE} "
            "verify true`)"
        )
    elif settings[QUARANTINE].get("verify") != "true":
        found.append(
            f"the `{QUARANTINE}` remote does not verify what it serves: "
            f"`uv run dvc remote modify {QUARANTINE} verify true`"
        )
    if kind == "azure":
        found += [
            f"the {name} remote has no storage account: "
            f"`uv run dvc remote modify {name} account_name <account>`"
            for name in (default, QUARANTINE)
            if name in settings and not settings[name].get("account_name")
        ]
    for app, what in (("BOT", "the pull-request bot"), ("DEPLOY", "the deploy identity")):
        if not variables.get(f"{app}_CLIENT_ID"):
            found.append(f"repository variable {app}_CLIENT_ID is not set: {what}'s GitHub App")
    if "BOT_PRIVATE_KEY" not in secrets:
        found.append("repository secret BOT_PRIVATE_KEY is not set: the bot App's private key")
    return found


def notes(variables: dict[str, str], secrets: set[str]) -> list[str]:
    """Optional settings that are missing: what runs without them."""
    found = [
        f"{name} is not set: {what}" for name, what in OPTIONAL.items() if not variables.get(name)
    ]
    if variables.get("MLFLOW_TRACKING_URI") and "MLFLOW_TRACKING_TOKEN" not in secrets:
        found.append("MLFLOW_TRACKING_TOKEN is not set: fine only if the server needs no login")
    return found


def required_checks(names: list[str], strict: bool, queued: bool) -> list[str]:
    """What a set of required checks on main lacks."""
    found = [
        f"main does not require the check `{check}`: add it to the ruleset's required checks"
        for check in REQUIRED_CHECKS
        if check not in names
    ]
    if not strict and not queued:
        found.append(
            "main lets a pull request merge without testing it on the newest main: turn on "
            "'require branches to be up to date before merging', or a merge queue"
        )
    return found


def protection_problems(rules: list[Json], branch: Json) -> list[str]:
    """Rulesets (rules of main) first, else classic branch protection (the branch's summary)."""
    types = {rule["type"] for rule in rules}
    checks = [rule for rule in rules if rule["type"] == "required_status_checks"]
    if checks:
        parameters = [rule.get("parameters", {}) for rule in checks]
        names = [c["context"] for p in parameters for c in p.get("required_status_checks", [])]
        strict = any(p.get("strict_required_status_checks_policy") for p in parameters)
        found = required_checks(names, strict, "merge_queue" in types)
        if "pull_request" not in types:
            found.append("main accepts pushes without a pull request: require one in the ruleset")
        return found
    # "Get a branch" shows classic protection's required checks to any reader (BranchWithProtection
    # in github.com/github/rest-api-description); the rest of it only to admins.
    classic = (branch.get("protection") or {}).get("required_status_checks") or {}
    if branch.get("protected") and classic:
        names = classic.get("contexts") or [c["context"] for c in classic.get("checks", [])]
        # Classic protection shows strictness only to admins: the doctor cannot see it.
        return required_checks(names, strict=True, queued=False)
    return [
        "main requires no checks: add a ruleset on main that requires pull requests and the "
        f"checks {', '.join(f'`{check}`' for check in REQUIRED_CHECKS)}"
    ]


def environment_problems(environment: Json | None, policies: list[str] | None) -> list[str]:
    """The environment of the deploy key must exist and admit main only."""
    if environment is None:
        return [
            f"no environment `{ENVIRONMENT}`: create it, allow only the branch main to deploy "
            "to it, and put the secret DEPLOY_PRIVATE_KEY in it"
        ]
    policy = environment.get("deployment_branch_policy")
    if policy is None or (policy.get("custom_branch_policies") and policies != ["main"]):
        return [
            f"environment `{ENVIRONMENT}` admits branches other than main, so they could use "
            "the deploy key: set its deployment branches to main only"
        ]
    return []


def app_problems(app: str, installation: Json | None) -> list[str]:
    """The App must be installed here with at least the permissions the workflows ask of it."""
    if installation is None:
        return [f"the {app} App ({app}_CLIENT_ID) is not installed on this repository"]
    granted = installation.get("permissions", {})
    rank = {"read": 1, "write": 2, "admin": 3}
    return [
        f"the {app} App lacks {name}: {level} (it has {granted.get(name, 'none')}): "
        "add it to the App's permissions and accept the change in its installation"
        for name, level in APPS[app].items()
        if rank.get(granted.get(name, ""), 0) < rank[level]
    ]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(client_id: str, private_key: str, now: float) -> str:
    """The JSON Web Token a GitHub App signs (RS256) to act as itself for ten minutes at most."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise cli.UserError("BOT_PRIVATE_KEY is not an RSA private key: paste the App's .pem")
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    # Issued a minute early against clock drift, as GitHub recommends; valid nine minutes.
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": client_id}
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def get(api: str, path: str, token: str) -> Any:
    """GitHub's JSON at path; None when it is not there (404)."""
    request = urllib.request.Request(
        f"{api}{path}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def github_problems(api: str, repository: str, token: str, bot_key: str, bot_id: str) -> list[str]:
    """What GitHub itself says about main, the deploy environment and the bot App."""
    found = protection_problems(
        get(api, f"/repos/{repository}/rules/branches/main", token) or [],
        get(api, f"/repos/{repository}/branches/main", token) or {},
    )
    environment = get(api, f"/repos/{repository}/environments/{ENVIRONMENT}", token)
    policies = None
    if environment and (environment.get("deployment_branch_policy") or {}).get(
        "custom_branch_policies"
    ):
        listed = get(
            api, f"/repos/{repository}/environments/{ENVIRONMENT}/deployment-branch-policies", token
        )
        policies = sorted(p["name"] for p in (listed or {}).get("branch_policies", []))
    found += environment_problems(environment, policies)
    if bot_key and bot_id:
        jwt = app_jwt(bot_id, bot_key, time.time())
        found += app_problems("BOT", get(api, f"/repos/{repository}/installation", jwt))
    return found


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="doctor", description=__doc__)
    parser.parse_args(argv)
    env = os.environ
    variables = json.loads(env.get("VARS") or "{}")
    secrets = {
        key.removeprefix("HAS_")
        for key, value in env.items()
        if key.startswith("HAS_") and value == "true"
    }
    found = problems(Path(".dvc/config"), variables, secrets)
    repository, token = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_TOKEN")
    if repository and token:
        try:
            found += github_problems(
                env.get("GITHUB_API_URL", API),
                repository,
                token,
                env.get("BOT_PRIVATE_KEY", ""),
                variables.get("BOT_CLIENT_ID", ""),
            )
        except urllib.error.URLError as error:
            found.append(f"could not read the repository's settings ({error}): check them by hand")
    else:
        print("note: branch rules, the environment and the App are checked on GitHub (doctor.yml)")
    for note in notes(variables, secrets):
        print(f"optional: {note}")
    for problem in found:
        print(f"missing: {problem}")
    if found:
        raise cli.UserError(f"{len(found)} setting(s) to fix, listed above")
    print("doctor: every setting the workflows need is in place")


if __name__ == "__main__":
    cli.run(main)
