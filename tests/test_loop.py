"""Loop (slow): the life of a generated repository, offline, through the targets its workflows call.

A bare repository stands in for GitHub; every step runs the make target that the named workflow
runs, and the test first checks, with the project's own reading of the workflows (`ops.score`),
that a step of that workflow runs it on this repository: its job's and its own `if:` evaluated with
the repository variables the team set. Local folders stand in for the DVC remote and its
quarantine; other clones for forks and teammates.
"""

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RUNNING_PYTHON, bake_into, git, run
from test_manifests import SERIES, metric_names

pytestmark = pytest.mark.slow

ANSWERS = {
    "name": "Churn Guard",
    "project": "churn-guard",
    "author": "Data Team",
    "github_owner": "Acme-ML",
    "python_version": RUNNING_PYTHON,
}
IMAGE = "ghcr.io/acme-ml/churn-guard"
DIGESTS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]


class Repository:
    """The baked project, with the make targets its workflows run given its variables."""

    def __init__(self, path: Path, variables: dict[str, str]) -> None:
        self.path = path
        self.variables = variables
        self.targets = self.workflow_targets(variables)

    def workflow_targets(self, variables: dict[str, str]) -> dict[str, set[str]]:
        """Per workflow, the targets of the steps that run on a repository with these variables."""
        package = ANSWERS["project"].replace("-", "_")
        settings = [f"--var={name}={value}" for name, value in variables.items()]
        shown = run(
            [
                "uv",
                "run",
                "--locked",
                "python",
                "-m",
                f"{package}.ops.score",
                "--workflows",
                *settings,
            ],
            self.path,
        )
        return {name: set(targets) for name, targets in json.loads(shown.stdout).items()}

    def step(
        self,
        workflow: str,
        target: str,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the target as the workflow does; fail if no step of the workflow that runs here
        calls it. The jobs' MLFLOW_TRACKING_URI is the variable's value."""
        assert target in self.targets[workflow], f"{workflow} does not run make {target} here"
        tracking = {"MLFLOW_TRACKING_URI": self.variables["MLFLOW_TRACKING_URI"]}
        return run(["make", target, *args], self.path, check=check, env=tracking | (env or {}))

    def script(self, workflow: str, condition: str) -> str:
        """The shell of the workflow's step whose `if` says condition."""
        jobs = yaml.safe_load((self.path / ".github/workflows" / workflow).read_text())["jobs"]
        (found,) = [
            step["run"]
            for job in jobs.values()
            for step in job.get("steps", [])
            if condition in str(step.get("if", ""))
        ]
        return str(found)

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def commit(self, message: str) -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "--message", message)
        return self.git("rev-parse", "HEAD").strip()

    def rendered(self, env: str) -> list[dict[str, Any]]:
        kubectl = str(self.path / ".venv/bin/kubectl")
        manifests = run([kubectl, "kustomize", f"deploy/overlays/{env}"], self.path).stdout
        return [doc for doc in yaml.safe_load_all(manifests) if doc]

    def rendered_image(self, env: str) -> str:
        (deployment,) = [d for d in self.rendered(env) if d["kind"] == "Deployment"]
        image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def canary(self, env: str) -> list[object]:
        """What the environment's Rollout does with a release: the image its workload runs, then
        each step (a weight, or the thresholds and series of the analysis that judges it)."""
        objects = self.rendered(env)
        (rollout,) = [o for o in objects if o["kind"] == "Rollout"]
        workload = rollout["spec"]["workloadRef"]
        (runs,) = [
            o
            for o in objects
            if (o["kind"], o["metadata"]["name"]) == (workload["kind"], workload["name"])
        ]
        templates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "AnalysisTemplate"}
        steps: list[object] = [runs["spec"]["template"]["spec"]["containers"][0]["image"]]
        for step in rollout["spec"]["strategy"]["canary"]["steps"]:
            if "setWeight" in step:
                steps.append(step["setWeight"])
                continue
            (judge,) = step["analysis"]["templates"]
            metrics = templates[judge["templateName"]]["spec"]["metrics"]
            steps.append(
                {
                    m["name"]: (
                        float(m["successCondition"].rpartition(" <= ")[2]),
                        metric_names(m["provider"]["prometheus"]["query"]) <= set(SERIES),
                    )
                    for m in metrics
                }
            )
        return [*steps, 100]  # after the last step, the release takes all the traffic


def json_of(path: Path) -> Any:
    return json.loads(path.read_text())


def test_the_life_of_a_repository(tmp_path_factory: pytest.TempPathFactory) -> None:
    # 1. A team starts a repository; a bare repository stands in for GitHub. The bake committed
    #    the lock; the team points the DVC remote and its quarantine at its storage.
    root = tmp_path_factory.mktemp("loop")
    path = bake_into(root, lock=True, **ANSWERS)
    # The team's repository variables: a tracking server (here the project's SQLite store), the
    # source of fresh data, the bot that opens retrain pull requests, the service's request logs.
    repo = Repository(
        path,
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{path / 'mlflow.db'}",
            "DATA_SOURCE": "build/fresh.csv",
            "BOT_CLIENT_ID": "123456",
            "REQUEST_LOGS": "https://logs.example.org/churn-guard",
        },
    )
    # A repository without them registers nothing, moves no alias and never retrains.
    default = repo.workflow_targets({})
    assert "register" in repo.targets["release.yml"] - default["release.yml"]
    assert "alias" in repo.targets["promote.yml"] - default["promote.yml"]
    assert {"refresh", "train"} <= repo.targets["retrain.yml"] - default["retrain.yml"]
    assert "drift" in repo.targets["monitor.yml"] - default["monitor.yml"]
    assert (
        repo.git("log", "--format=%s", "--", "uv.lock").split("\n")[0]
        == "Start from the MLOps template"
    )
    origin = root / "origin.git"
    run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], root)
    repo.git("remote", "add", "origin", str(origin))
    assert (repo.path / "src/churn_guard/pipeline/train.py").is_file()
    repo.step("ci.yml", "setup")
    dvc = ["uv", "run", "--locked", "dvc"]
    run([*dvc, "remote", "modify", "local", "url", str(root / "remote")], repo.path)
    run([*dvc, "remote", "modify", "pr", "url", str(root / "remote-pr")], repo.path)
    repo.commit("Keep the data in the team's storage")

    # 2. Main's first model: trained, its outputs in the remote, its results committed.
    repo.step("train.yml", "train")
    repo.step("release.yml", "push")
    repo.step("train.yml", "commit-results")
    repo.git("push", "--quiet", "origin", "main")

    # 3. A pull request that changes no input of the pipeline trains nothing; one that changes a
    #    hyperparameter trains, may push only to the quarantine, and reports against main.
    repo.git("switch", "--quiet", "--create", "docs")
    (repo.path / "NOTES.md").write_text("How we work.\n")
    repo.commit("Notes")
    assert "nothing to train" in repo.step("train.yml", "changed", "BASE=main").stdout
    repo.git("switch", "--quiet", "main")
    repo.git("switch", "--quiet", "--create", "tune")
    tune(repo.path / "params.yaml", "class_weight: [null, balanced]", "class_weight: [balanced]")
    repo.commit("Tune the class weights")
    changed = repo.step("train.yml", "changed", "BASE=main").stdout
    assert "the pipeline's inputs changed since main: params.yaml" in changed
    repo.step("train.yml", "train")
    repo.step("train.yml", "push", "REMOTE=pr")
    repo.step("train.yml", "commit-results")
    repo.step("train.yml", "report", "BASE=main")
    report = (repo.path / "reports/pr/report.md").read_text()
    assert "train.search.space.class_weight" in report
    assert "passes the gate" in report.split("\n\n")[1]
    assert "accuracy" in report
    assert report.count("```mermaid\n") == 3  # drawn by GitHub in the comment, no image to host
    repo.git("push", "--quiet", "origin", "tune")

    # 4. A fork's pull request that changes the pipeline: the required check fails, saying how a
    #    maintainer trains it, instead of passing untrained.
    fork = root / "fork"
    run(["git", "clone", "--quiet", "--branch", "main", str(origin), str(fork)], root)
    tune(fork / "params.yaml", "test_size: 0.2", "test_size: 0.25")
    git(fork, "commit", "--quiet", "--all", "--message", "A contributor's split")
    repo.git("fetch", "--quiet", str(fork), "main:fork-7")
    repo.git("switch", "--quiet", "fork-7")
    outputs = root / "github_output"
    repo.step("train.yml", "changed", "BASE=main", env={"GITHUB_OUTPUT": str(outputs)})
    assert outputs.read_text() == "pipeline=true\n"
    refused = run(
        ["bash", "-c", repo.script("train.yml", "env.UNTRUSTED == 'true'")],
        repo.path,
        check=False,
        env={"PR": "7"},
    )
    assert refused.returncode == 1
    assert refused.stdout.startswith("::error title=Train this change from a branch::")
    assert "`gh pr checkout 7 && git push origin HEAD:train/pr-7`" in refused.stdout
    repo.git("push", "--quiet", "origin", "fork-7:train/pr-7")  # the maintainer's way to green

    # 5. The merge releases on a fresh runner: what the pull request trained comes from the
    #    quarantine, is checked against dvc.lock and pushed to the remote; the image is
    #    registered; meanwhile a teammate merges; the write-back still lands on main, once.
    repo.git("switch", "--quiet", "main")
    repo.git("merge", "--quiet", "--no-ff", "tune", "--message", "Merge the tuning")
    repo.git("push", "--quiet", "origin", "main")
    # A fresh runner: no DVC cache, no data, no pipeline output (git ignores them all).
    shutil.rmtree(repo.path / ".dvc/cache")
    repo.git("clean", "-fdXq", "data", "models")
    assert not (repo.path / "models/model.joblib").exists()
    repo.step("release.yml", "pull")
    repo.step("release.yml", "status")
    repo.step("release.yml", "push")
    remote_status = run([*dvc, "status", "--cloud", "--remote", "local", "--json"], repo.path)
    assert json.loads(remote_status.stdout) == {}
    repo.step("release.yml", "bento")
    first = f"{IMAGE}@{DIGESTS[0]}"
    repo.step("release.yml", "register", "ALIAS=staging", f"IMAGE={first}")
    teammate = root / "teammate"
    run(["git", "clone", "--quiet", str(origin), str(teammate)], root)
    (teammate / "CONTRIBUTING.md").write_text("Open a pull request.\n")
    git(teammate, "add", "--all")
    git(teammate, "commit", "--quiet", "--message", "Merged while the release built")
    git(teammate, "push", "--quiet", "origin", "main")
    deployed = repo.step("release.yml", "deploy", "ENV=staging", f"IMAGE={first}", env=RELEASER)
    assert f"pushed deploy(staging) to main: {first}" in deployed.stdout
    log = git(origin, "log", "--format=%s", "main").splitlines()
    assert log[:3] == [
        f"deploy(staging): {DIGESTS[0]}",
        "Merged while the release built",
        "Merge the tuning",
    ]
    rerun = repo.step("release.yml", "deploy", "ENV=staging", f"IMAGE={first}", env=RELEASER)
    assert f"main already deploys {first} to staging: nothing to commit" in rerun.stdout
    assert git(origin, "log", "--format=%s", "main").splitlines() == log
    repo.git("checkout", "--quiet", "-B", "main", "origin/main")
    assert repo.rendered_image("staging") == first
    # Argo Rollouts gives the release 10%, then 50%, then all of staging's traffic, each step only
    # once Prometheus finds the canary within params.yaml's SLO, on series the service exports.
    slo = yaml.safe_load((repo.path / "params.yaml").read_text())["serve"]["slo"]
    judged = {
        "error-rate": (slo["error_rate"], True),
        "p99-latency": (slo["p99_ms"] / 1000, True),
        "rejected-rate": (slo["rejected_rate"], True),
    }
    assert repo.canary("staging") == [first, 10, judged, 50, judged, 100]
    application = yaml.safe_load((repo.path / "argocd/staging.yaml").read_text())
    assert application["spec"]["source"]["path"] == "deploy/overlays/staging"
    assert application["spec"]["source"]["targetRevision"] in {"main", "HEAD"}
    assert application["spec"]["source"]["repoURL"] == "https://github.com/Acme-ML/churn-guard"

    # 6. Main holding changes nobody trained together is never released: the release says so.
    tune(repo.path / "params.yaml", "test_size: 0.2", "test_size: 0.3")
    repo.commit("A merge that took one side's params and the other's dvc.lock")
    untested = repo.step("release.yml", "status", check=False)
    assert untested.returncode != 0
    assert (
        "dvc.lock does not describe this commit: split (changed deps params.yaml:split"
        in untested.stderr
    )
    repo.git("reset", "--quiet", "--hard", "origin/main")

    # 7. Promotion: a reviewed change copies the digest to production; the alias follows.
    repo.step("promote.yml", "promote")
    repo.step("promote.yml", "manifests")
    repo.commit("deploy(production): promote the staging image")
    assert repo.rendered_image("production") == first
    repo.step("promote.yml", "alias", "ENV=production")
    aliases = registry(repo.path)
    assert aliases["production"] == aliases["staging"] == aliases["first"]

    # 8. The world drifts: make drift says so, and the retrain path opens a branch.
    run(["uv", "run", "--locked", "python", "-c", DRIFTED], repo.path)
    drifted = repo.step("monitor.yml", "drift", "CURRENT=build/drifted.csv", check=False)
    assert drifted.returncode != 0, drifted.stdout
    assert "see reports/drift/summary.md" in drifted.stdout + drifted.stderr
    assert (repo.path / "reports/drift/summary.md").read_text().startswith("**Drift detected**")
    lock = (repo.path / "dvc.lock").read_text()
    champion = json.loads(repo.git("show", "main:reports/metrics.json"))  # the tuned model's
    repo.git("switch", "--quiet", "--create", "retrain")
    repo.step("retrain.yml", "refresh", f"SOURCE={repo.variables['DATA_SOURCE']}")
    repo.step("retrain.yml", "train")
    repo.step("retrain.yml", "push", "REMOTE=pr")
    repo.commit("retrain: fresh data, dvc.lock and reports")
    assert (repo.path / "dvc.lock").read_text() != lock
    retrained = json_of(repo.path / "reports/metrics.json")
    assert retrained != champion
    # Its pull request is reviewed like any other: the report compares it with the champion.
    repo.step("train.yml", "report", "BASE=main")
    report = (repo.path / "reports/pr/report.md").read_text()
    row = f"| accuracy | {champion['accuracy']:.4g} | {retrained['accuracy']:.4g} |"
    assert row in report, report
    assert {"data/raw.csv.dvc", "dvc.lock"} <= set(repo.git("diff", "--name-only", "main").split())

    # 9. The retrained model is merged, released and promoted; it misbehaves in production, and
    #    reverting its promotion serves the previous image again and moves the alias back.
    repo.git("switch", "--quiet", "main")
    repo.git("merge", "--quiet", "--no-ff", "retrain", "--message", "Merge the retrain")
    repo.git("push", "--quiet", "origin", "main")
    second = f"{IMAGE}@{DIGESTS[1]}"
    repo.step("release.yml", "register", "ALIAS=staging", f"IMAGE={second}")
    repo.step("release.yml", "deploy", "ENV=staging", f"IMAGE={second}", env=RELEASER)
    repo.git("checkout", "--quiet", "-B", "main", "origin/main")
    repo.step("promote.yml", "promote")
    promotion = repo.commit("deploy(production): promote the staging image")
    assert repo.canary("production") == [second, 10, judged, 50, judged, 100]
    repo.step("promote.yml", "alias", "ENV=production")
    versions = registry(repo.path)
    assert versions["production"] == versions["staging"] != versions["first"]
    repo.git("revert", "--no-edit", promotion)
    assert repo.git("show", "--name-only", "--format=", "HEAD").split() == [
        "deploy/overlays/production/deployment.yaml"
    ]
    assert repo.rendered_image("production") == first
    repo.step("promote.yml", "alias", "ENV=production")  # the revert's push to main runs it
    assert registry(repo.path)["production"] == versions["first"]


def registry(path: Path) -> dict[str, str]:
    """The registry's aliases, and `first`: the version tagged with the first image."""
    with sqlite3.connect(path / "mlflow.db") as db:
        aliases = {
            a: str(v) for a, v in db.execute("select alias, version from registered_model_aliases")
        }
        (first,) = db.execute(
            "select version from model_version_tags where key = 'image' and value = ?",
            (f"{IMAGE}@{DIGESTS[0]}",),
        ).fetchone()
    return {**aliases, "first": str(first)}


def tune(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


# The identity the release's deploy job commits with (its App's, through git's own variables).
RELEASER = {
    "GIT_AUTHOR_NAME": "churn-guard-deployer[bot]",
    "GIT_AUTHOR_EMAIL": "deployer@example.org",
    "GIT_COMMITTER_NAME": "churn-guard-deployer[bot]",
    "GIT_COMMITTER_EMAIL": "deployer@example.org",
}


# Drifted requests (every size measurement reads 30 % high) and a fresh export of the data for the
# retrain (the same patients, measured 2 % larger): written by the project's own Python.
DRIFTED = """
import pandas as pd
raw = pd.read_csv("data/raw.csv")
sizes = [c for c in raw.columns if c.startswith("mean_")]
test = pd.read_parquet("data/split/test.parquet").drop(columns="diagnosis")
test[sizes] *= 1.3
test.to_csv("build/drifted.csv", index=False)
fresh = raw.sample(frac=0.9, random_state=1)
fresh[sizes] *= 1.02
fresh.to_csv("build/fresh.csv", index=False)
"""
