"""GitHub semantics tier: rules GitHub enforces that no linter checks, over every baked workflow.

Each rule is a function from the workflows (and what the project documents) to the violations it
finds. Each runs on the workflows of every option combination, and on a workflow that breaks it,
which proves that the rule can fail. Where a rule rests on GitHub's behaviour, the source is cited.
"""

import ast
import copy
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import bake_into

Workflow = dict[Any, Any]
Workflows = dict[str, Workflow]
COMBINATIONS = list(itertools.product(["3.11", "3.12", "3.13"], ["local", "s3", "gs", "azure"]))
# Cloud logins: a job holding one holds credentials.
LOGINS = (
    "$/.github/actions/dvc-remote",
    "aws-actions/configure-aws-credentials@",
    "google-github-actions/auth@",
    "Azure/login@",
)
# Variables a workflow may run without: it then works another way, and says so.
OPTIONAL = {"MLFLOW_TRACKING_URI", "ATTESTATIONS"}


class Project:
    """A baked project's workflows and what it documents about them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.workflows: Workflows = {
            p.name: yaml.safe_load(p.read_text())
            for p in sorted(path.glob(".github/workflows/*.yml"))
        }
        (doctor,) = path.glob("src/**/doctor.py")
        constants = {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(doctor.read_text()).body
            if isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("REQUIRED_CHECKS", "APPS")
        }
        self.required: tuple[str, ...] = constants["REQUIRED_CHECKS"]
        self.doctor_apps: dict[str, dict[str, str]] = constants["APPS"]
        self.readme = (path / "README.md").read_text()
        self.doctor = self.ask_doctor({}) + self.ask_doctor({"MLFLOW_TRACKING_URI": "x"})
        self.github = "\n".join(p.read_text() for p in sorted(path.glob(".github/**/*.yml")))

    def ask_doctor(self, variables: dict[str, str]) -> str:
        """What `make doctor` says with these variables and no secret, run as CI runs it."""
        package = next(p.name for p in (self.path / "src").iterdir())
        result = subprocess.run(
            [sys.executable, "-m", f"{package}.ops.doctor"],
            cwd=self.path,
            capture_output=True,
            text=True,
            env={
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("HAS_", "GITHUB_"))
            }
            | {"PYTHONPATH": "src", "VARS": json.dumps(variables)},
        )
        # A doctor that cannot start names nothing: that is this test's failure, not a finding.
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout + result.stderr


@pytest.fixture(scope="module", params=COMBINATIONS, ids=lambda c: "-".join(c))
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    python, remote = request.param
    return Project(
        bake_into(tmp_path_factory.mktemp("github"), python_version=python, dvc_remote=remote)
    )


def jobs(workflows: Workflows) -> list[tuple[str, str, Workflow]]:
    return [
        (name, job_id, job) for name, w in workflows.items() for job_id, job in w["jobs"].items()
    ]


def triggers(workflow: Workflow) -> dict[str, Any]:
    on = workflow[True]  # YAML reads `on:` as True
    return {on: None} if isinstance(on, str) else dict(on)


def text(value: Any) -> str:
    return yaml.safe_dump(value, width=1000)


def uses(step: Workflow, *prefixes: str) -> bool:
    return str(step.get("uses", "")).startswith(prefixes)


# Rule 1. A required check whose workflow is skipped by a path (or branch) filter stays "Expected"
# and blocks the merge; a merge queue waits for its required checks on `merge_group`
# https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/collaborating-on-repositories-with-code-quality-features/troubleshooting-required-status-checks
def required_checks_always_report(workflows: Workflows, required: tuple[str, ...]) -> list[str]:
    found = []
    provided = set()
    for name, workflow in workflows.items():
        names = {job.get("name") for job in workflow["jobs"].values()} & set(required)
        if not names:
            continue
        provided |= names
        on = triggers(workflow)
        for event in ("pull_request", "merge_group"):
            if event not in on:
                found.append(f"{name}: provides {sorted(names)} but does not run on {event}")
            elif set(on[event] or {}) & {"paths", "paths-ignore"}:
                found.append(f"{name}: {event} is filtered by paths, so its check can stay pending")
    found += [
        f"no workflow provides the required check {check!r}" for check in set(required) - provided
    ]
    return found


# Rule 2. A job skipped by a job-level `if` reports success to a required check, and a job whose
# `needs` failed is skipped without reporting a failure (same page as rule 1): a required job has
# neither, unless a twin of the same name fails in its place.
def required_jobs_cannot_be_skipped(workflows: Workflows, required: tuple[str, ...]) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        if job.get("name") not in required:
            continue
        if "needs" in job and not re.search(r"always\(\)|!cancelled\(\)", str(job.get("if", ""))):
            found.append(f"{name}: {job_id} needs other jobs, and is skipped when they fail")
        if "if" in job:
            twins = [
                other
                for _, other_id, other in jobs({name: workflows[name]})
                if other_id != job_id
                and other.get("name") == job["name"]
                and any("exit 1" in step.get("run", "") for step in other.get("steps", []))
            ]
            if not twins:
                found.append(
                    f"{name}: {job_id} has a job-level `if`, so skipping it passes the check"
                )
    return found


# Rule 3. With `permissions:` set, GITHUB_TOKEN gets none that is not listed: in a private
# repository actions/checkout then fails with "Repository not found"
# (github.com/actions/checkout/issues/445, github.com/rucio/rucio/issues/8423).
def checkouts_can_read(workflows: Workflows) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            readable = job.get("permissions", {}).get("contents") in ("read", "write")
            if (
                uses(step, "actions/checkout@")
                and not readable
                and not step.get("with", {}).get("token")
            ):
                found.append(f"{name}: {job_id} checks out without contents permission or a token")
    return found


# Rule 4. The job that writes the pull request comment runs nothing but the comment: no cloud
# login, no OIDC token, no secret, so that a compromised tool there reaches nothing else.
def comment_without_credentials(workflows: Workflows) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        steps = job.get("steps", [])
        posts = any(re.search(r"\bmake comment\b|\bcml comment\b", s.get("run", "")) for s in steps)
        if not posts:
            continue
        if job.get("permissions", {}).get("id-token") == "write":
            found.append(f"{name}: {job_id} posts the comment with an OIDC token")
        if any(uses(step, *LOGINS) for step in steps):
            found.append(f"{name}: {job_id} posts the comment next to cloud credentials")
        if "secrets." in text(job):
            found.append(f"{name}: {job_id} posts the comment next to a secret")
    return found


# Rule 5. One release at a time (workflow-level concurrency: job-level groups let two releases
# interleave their jobs), and the write-back goes through `make deploy`, which commits on the
# newest main and retries a push that lost a race (the loop test and the project's tests prove it).
def release_is_serialized_and_rebases(workflows: Workflows) -> list[str]:
    release = workflows.get("release.yml")
    if release is None:
        return ["no release.yml"]
    found = []
    concurrency = release.get("concurrency") or {}
    if not concurrency.get("group") or concurrency.get("cancel-in-progress") is not False:
        found.append("release.yml: no workflow-level concurrency that queues releases")
    for job_id, job in release["jobs"].items():
        if "concurrency" in job:
            found.append(f"release.yml: {job_id} has a concurrency group of its own")
        for step in job.get("steps", []):
            if re.search(r"\bgit push\b", step.get("run", "")):
                found.append(f"release.yml: {job_id} pushes with git instead of `make deploy`")
    deployers = [job for job in release["jobs"].values() if "make deploy" in text(job.get("steps"))]
    if len(deployers) != 1 or "build" not in deployers[0].get("needs", []):
        found.append("release.yml: not exactly one job runs `make deploy` after the build")
    return found


def documented_apps(readme: str) -> dict[str, dict[str, str]]:
    """The App permissions of the README's table: `| (`BOT_CLIENT_ID`) | Contents: write; ... |`."""
    apps = {}
    for row in readme.splitlines():
        if match := re.match(r"\|.*`([A-Z]+)_CLIENT_ID`.*?\| ([^|]*:[^|]*) \|", row.strip()):
            apps[match[1]] = {
                key.strip().lower().replace(" ", "_"): value.strip().split()[-1]
                for key, value in (part.split(":") for part in match[2].split(";"))
            }
    return apps


# Rule 6. An App's token can be asked only for permissions its installation grants, else its
# creation fails: each permission a workflow asks for is in the README's App setup and in what
# `make doctor` checks against the installation.
def app_permissions_documented(
    workflows: Workflows, documented: dict[str, dict[str, str]], doctor: dict[str, dict[str, str]]
) -> list[str]:
    found = []
    if documented != doctor:
        found.append(f"the README documents {documented}, make doctor checks {doctor}")
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            if not uses(step, "actions/create-github-app-token@"):
                continue
            inputs = step.get("with", {})
            app = re.search(r"vars\.([A-Z]+)_CLIENT_ID", str(inputs.get("client-id")))
            asked = {
                key.removeprefix("permission-").replace("-", "_"): value
                for key, value in inputs.items()
                if key.startswith("permission-")
            }
            if app is None or app[1] not in documented:
                found.append(f"{name}: {job_id} mints a token of an App the README does not set up")
            elif not asked:
                found.append(f"{name}: {job_id} asks for every permission the App has")
            else:
                found += [
                    f"{name}: {job_id} asks the {app[1]} App for {key}: {value}, not documented"
                    for key, value in asked.items()
                    if documented[app[1]].get(key) != value
                ]
    return found


# Rule 7. A scheduled workflow runs whether or not it was set up: each job that needs variables
# runs only when they are set, and a twin job says in a notice what to set.
def scheduled_workflows_guard(workflows: Workflows) -> list[str]:
    found = []
    for name, workflow in workflows.items():
        if "schedule" not in triggers(workflow):
            continue
        notices = [job for job in workflow["jobs"].values() if "::notice" in text(job.get("steps"))]
        for job_id, job in workflow["jobs"].items():
            body = {key: value for key, value in job.items() if key != "if"}
            needed = set(re.findall(r"vars\.([A-Z_]+)", text(body))) - OPTIONAL
            condition = str(job.get("if", ""))
            for variable in sorted(needed):
                if f"vars.{variable} != ''" not in condition:
                    found.append(f"{name}: {job_id} runs without checking {variable} is set")
                elif not any(f"vars.{variable} == ''" in str(n.get("if", "")) for n in notices):
                    found.append(f"{name}: no notice says {job_id} skipped for want of {variable}")
    return found


# Rule 8. `always()` runs a step even when the run is cancelled; report steps use `!cancelled()`.
def no_always(workflows: Workflows) -> list[str]:
    return [
        f"{name}: {job_id} uses always()"
        for name, job_id, job in jobs(workflows)
        if "always()" in text(job)
    ]


# Rule 9. An App's installation token expires after an hour
# https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-an-installation-access-token-for-a-github-app
# it is minted by the step right before the one that uses it.
def tokens_minted_before_use(workflows: Workflows) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        steps = job.get("steps", [])
        for index, step in enumerate(steps):
            if uses(step, "actions/create-github-app-token@"):
                following = steps[index + 1] if index + 1 < len(steps) else {}
                if f"steps.{step.get('id')}.outputs.token" not in text(following):
                    found.append(f"{name}: {job_id} mints a token that the next step does not use")
    return found


# Rule 10. Forks and Dependabot get no secrets and no OIDC token on `pull_request`
# https://docs.github.com/en/code-security/dependabot/troubleshooting-dependabot/troubleshooting-dependabot-on-github-actions
# a required job that needs them fails for those runs, saying so, instead of passing untrained.
def untrusted_runs_fail_visibly(workflows: Workflows, required: tuple[str, ...]) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        if job.get("name") not in required or "pull_request" not in triggers(workflows[name]):
            continue
        needs_trust = job.get("permissions", {}).get("id-token") == "write" or "secrets." in text(
            job
        )
        if not needs_trust:
            continue
        markers = {"head.repo.full_name", "dependabot[bot]"}
        env = {
            key
            for key, value in job.get("env", {}).items()
            if all(m in str(value) for m in markers)
        }
        if not any(
            "exit 1" in step.get("run", "")
            and (
                all(m in str(step.get("if", "")) for m in markers)
                or any(f"env.{key}" in str(step.get("if", "")) for key in env)
            )
            for step in job.get("steps", [])
        ):
            found.append(f"{name}: {job_id} has no failing step for forks and Dependabot")
    return found


# Rule 11. The DVC remote's write role trusts refs/heads/main only, and the deploy key is read
# only in a job bound to an environment that admits main: other events never ask for either.
def write_identities_on_main_only(workflows: Workflows) -> list[str]:
    found = []
    for name, job_id, job in jobs(workflows):
        on = triggers(workflows[name])
        on_main = set(on) == {"push"} and (on["push"] or {}).get("branches") == ["main"]
        for step in job.get("steps", []):
            if (
                uses(step, "$/.github/actions/dvc-remote")
                and step["with"].get("role") != "pr"
                and not on_main
            ):
                found.append(f"{name}: {job_id} asks for the remote's main role off main")
        if "DEPLOY_PRIVATE_KEY" in text(job) and ("environment" not in job or not on_main):
            found.append(f"{name}: {job_id} reads the deploy key outside the main-only environment")
    return found


# Rule 12. Without a tracking server the registry steps cannot run: they skip, and a twin job says
# so in a notice, rather than registering into a throwaway file or failing.
def registry_steps_say_when_skipped(workflows: Workflows) -> list[str]:
    found = []
    for name, workflow in workflows.items():
        notices = [
            str(job.get("if", ""))
            for job in workflow["jobs"].values()
            if "::notice" in text(job.get("steps"))
        ]
        for job_id, job in workflow["jobs"].items():
            if not re.search(r"\bmake (register|alias)\b", text(job.get("steps"))):
                continue
            if "vars.MLFLOW_TRACKING_URI != ''" not in str(job.get("if", "")):
                found.append(f"{name}: {job_id} runs the registry without a tracking server")
            if not any("vars.MLFLOW_TRACKING_URI == ''" in condition for condition in notices):
                found.append(f"{name}: nothing says that {job_id} skipped")
    return found


RULES: dict[str, Callable[[Project], list[str]]] = {
    "required_checks_always_report": lambda p: required_checks_always_report(
        p.workflows, p.required
    ),
    "required_jobs_cannot_be_skipped": lambda p: required_jobs_cannot_be_skipped(
        p.workflows, p.required
    ),
    "checkouts_can_read": lambda p: checkouts_can_read(p.workflows),
    "comment_without_credentials": lambda p: comment_without_credentials(p.workflows),
    "release_is_serialized_and_rebases": lambda p: release_is_serialized_and_rebases(p.workflows),
    "app_permissions_documented": lambda p: app_permissions_documented(
        p.workflows, documented_apps(p.readme), p.doctor_apps
    ),
    "scheduled_workflows_guard": lambda p: scheduled_workflows_guard(p.workflows),
    "no_always": lambda p: no_always(p.workflows),
    "tokens_minted_before_use": lambda p: tokens_minted_before_use(p.workflows),
    "untrusted_runs_fail_visibly": lambda p: untrusted_runs_fail_visibly(p.workflows, p.required),
    "write_identities_on_main_only": lambda p: write_identities_on_main_only(p.workflows),
    "registry_steps_say_when_skipped": lambda p: registry_steps_say_when_skipped(p.workflows),
}


@pytest.mark.parametrize("rule", RULES)
def test_the_baked_workflows_keep_the_rule(project: Project, rule: str) -> None:
    assert RULES[rule](project) == []


# Each rule, broken once: the smallest change to a good workflow that GitHub would punish.
@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project(bake_into(tmp_path_factory.mktemp("github-good"), dvc_remote="s3"))


def broken(good: Project, change: Callable[[Workflows], None]) -> Project:
    bad = copy.copy(good)
    bad.workflows = copy.deepcopy(good.workflows)
    change(bad.workflows)
    return bad


def step_of(workflow: Workflow, job: str, predicate: Callable[[Workflow], bool]) -> Workflow:
    return next(step for step in workflow["jobs"][job]["steps"] if predicate(step))


def filter_by_paths(w: Workflows) -> None:
    w["train.yml"][True]["pull_request"] = {"paths": ["src/**"]}


def drop_merge_group(w: Workflows) -> None:
    del w["ci.yml"][True]["merge_group"]


def skip_forks_by_if(w: Workflows) -> None:
    w["train.yml"]["jobs"]["train"]["if"] = (
        "github.event.pull_request.head.repo.full_name == github.repository"
    )


def need_a_job(w: Workflows) -> None:
    w["ci.yml"]["jobs"]["check"]["needs"] = ["setup"]


def checkout_without_contents(w: Workflows) -> None:
    w["release.yml"]["jobs"]["deploy"]["permissions"] = {}


def comment_with_oidc(w: Workflows) -> None:
    w["train.yml"]["jobs"]["comment"]["permissions"]["id-token"] = "write"


def comment_in_the_training_job(w: Workflows) -> None:
    w["train.yml"]["jobs"]["train"]["steps"].append({"run": "make comment PR=1"})


def per_job_concurrency(w: Workflows) -> None:
    del w["release.yml"]["concurrency"]
    w["release.yml"]["jobs"]["build"]["concurrency"] = {"group": "release-build"}


def push_without_rebase(w: Workflows) -> None:
    deploy = w["release.yml"]["jobs"]["deploy"]["steps"]
    deploy[-1] = {
        "run": "make set-image ENV=staging\ngit commit -am deploy\ngit push origin HEAD:main"
    }


def ask_for_workflows_permission(w: Workflows) -> None:
    step = step_of(
        w["promote.yml"], "propose", lambda s: uses(s, "actions/create-github-app-token@")
    )
    step["with"]["permission-administration"] = "write"


def ask_for_everything(w: Workflows) -> None:
    step = step_of(
        w["promote.yml"], "propose", lambda s: uses(s, "actions/create-github-app-token@")
    )
    step["with"] = {k: v for k, v in step["with"].items() if not k.startswith("permission-")}


def unguarded_schedule(w: Workflows) -> None:
    del w["monitor.yml"]["jobs"]["drift"]["if"]


def silent_skip(w: Workflows) -> None:
    del w["monitor.yml"]["jobs"]["skipped"]


def use_always(w: Workflows) -> None:
    step = step_of(w["monitor.yml"], "drift", lambda s: uses(s, "actions/upload-artifact@"))
    step["if"] = "always()"


def mint_at_job_start(w: Workflows) -> None:
    steps = w["promote.yml"]["jobs"]["propose"]["steps"]
    token = next(s for s in steps if uses(s, "actions/create-github-app-token@"))
    steps.remove(token)
    steps.insert(0, token)


def let_forks_pass(w: Workflows) -> None:
    steps = w["train.yml"]["jobs"]["train"]["steps"]
    steps[:] = [s for s in steps if "Train this change from a branch" not in s.get("run", "")]


def main_role_on_pull_requests(w: Workflows) -> None:
    step = step_of(w["train.yml"], "train", lambda s: uses(s, "$/.github/actions/dvc-remote"))
    step["with"]["role"] = "main"


def deploy_key_without_environment(w: Workflows) -> None:
    del w["release.yml"]["jobs"]["deploy"]["environment"]


def silent_registry(w: Workflows) -> None:
    del w["release.yml"]["jobs"]["registry-skipped"]


BREAKS: list[tuple[str, Callable[[Workflows], None], str]] = [
    (
        "required_checks_always_report",
        filter_by_paths,
        "train.yml: pull_request is filtered by paths",
    ),
    (
        "required_checks_always_report",
        drop_merge_group,
        "ci.yml: provides ['lint and test'] but does not run on merge_group",
    ),
    ("required_jobs_cannot_be_skipped", skip_forks_by_if, "train.yml: train has a job-level `if`"),
    ("required_jobs_cannot_be_skipped", need_a_job, "ci.yml: check needs other jobs"),
    (
        "checkouts_can_read",
        checkout_without_contents,
        "release.yml: deploy checks out without contents",
    ),
    (
        "comment_without_credentials",
        comment_with_oidc,
        "train.yml: comment posts the comment with an OIDC token",
    ),
    (
        "comment_without_credentials",
        comment_in_the_training_job,
        "train.yml: train posts the comment with an OIDC token",
    ),
    (
        "release_is_serialized_and_rebases",
        per_job_concurrency,
        "release.yml: no workflow-level concurrency",
    ),
    (
        "release_is_serialized_and_rebases",
        push_without_rebase,
        "release.yml: deploy pushes with git",
    ),
    (
        "app_permissions_documented",
        ask_for_workflows_permission,
        "promote.yml: propose asks the BOT App for administration: write",
    ),
    (
        "app_permissions_documented",
        ask_for_everything,
        "promote.yml: propose asks for every permission",
    ),
    (
        "scheduled_workflows_guard",
        unguarded_schedule,
        "monitor.yml: drift runs without checking REQUEST_LOGS",
    ),
    ("scheduled_workflows_guard", silent_skip, "monitor.yml: no notice says drift skipped"),
    ("no_always", use_always, "monitor.yml: drift uses always()"),
    (
        "tokens_minted_before_use",
        mint_at_job_start,
        "promote.yml: propose mints a token that the next step",
    ),
    (
        "untrusted_runs_fail_visibly",
        let_forks_pass,
        "train.yml: train has no failing step for forks",
    ),
    (
        "write_identities_on_main_only",
        main_role_on_pull_requests,
        "train.yml: train asks for the remote's main role",
    ),
    (
        "write_identities_on_main_only",
        deploy_key_without_environment,
        "release.yml: deploy reads the deploy key outside",
    ),
    ("registry_steps_say_when_skipped", silent_registry, "release.yml: nothing says that register"),
]


@pytest.mark.parametrize(("rule", "change", "message"), BREAKS, ids=[b[1].__name__ for b in BREAKS])
def test_each_rule_catches_a_workflow_that_breaks_it(
    good: Project, rule: str, change: Callable[[Workflows], None], message: str
) -> None:
    assert RULES[rule](good) == []
    found = RULES[rule](broken(good, change))
    assert any(problem.startswith(message) for problem in found), found


def test_undocumented_app_permissions_are_caught() -> None:
    readme = "| the bot (`BOT_CLIENT_ID`) | Contents: write; Pull requests: write |\n"
    documented = documented_apps(readme)
    assert documented == {"BOT": {"contents": "write", "pull_requests": "write"}}
    assert app_permissions_documented({}, documented, {"BOT": {"contents": "write"}}) == [
        "the README documents "
        "{'BOT': {'contents': 'write', 'pull_requests': 'write'}}, "
        "make doctor checks {'BOT': {'contents': 'write'}}"
    ]


# What the doctor cannot see from a workflow run, each with why; everything else it checks.
UNCHECKED = {
    "DEPLOY_PRIVATE_KEY": "a secret of the environment staging: the doctor checks the environment",
    "ATTESTATIONS": "a switch for private repositories on GitHub Enterprise Cloud",
}


def settings_documented(github: str, checklist: str, doctor: str) -> list[str]:
    """Every variable and secret the workflows and actions read is in the README's first-PR
    checklist, and `make doctor` names it when it is missing (or UNCHECKED says why it cannot)."""
    names = set(re.findall(r"(?:vars|secrets)\.([A-Z][A-Z0-9_]*)", github))
    names |= set(re.findall(r"fromJSON\(inputs\.vars\)\.([A-Z][A-Z0-9_]*)", github))
    found = [
        f"the README's checklist does not name {name}"
        for name in sorted(names)
        if name not in checklist
    ]
    found += [
        f"make doctor does not name {name}"
        for name in sorted(names)
        if name not in doctor and name not in UNCHECKED
    ]
    return found


def checklist_of(readme: str) -> str:
    return readme.split("## First pull request")[1].split("\n## ")[0]


def test_the_first_pull_request_checklist_names_every_setting_and_the_doctor_checks_it(
    project: Project,
) -> None:
    assert "`make push` once" in checklist_of(project.readme)
    assert settings_documented(project.github, checklist_of(project.readme), project.doctor) == []


def test_an_undocumented_setting_is_caught(good: Project) -> None:
    github = good.github + "\n        key: ${{ secrets.SIGNING_KEY }}\n"
    assert settings_documented(github, checklist_of(good.readme), good.doctor) == [
        "the README's checklist does not name SIGNING_KEY",
        "make doctor does not name SIGNING_KEY",
    ]
