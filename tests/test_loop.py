"""Loop (slow): the life of a generated repository, offline, through the targets its workflows call.

A bare repository stands in for GitHub; every step runs the make target that the named workflow
runs, and the test first checks, in the workflow's YAML, that the workflow does call it.
"""

import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RUNNING_PYTHON, bake_into, git, run

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
    """The baked project, with its workflows' make targets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.targets: dict[str, set[str]] = {}
        for workflow in sorted((path / ".github/workflows").glob("*.yml")):
            jobs = yaml.safe_load(workflow.read_text())["jobs"].values()
            steps = [step for job in jobs for step in job.get("steps", [])]
            # Local actions, by GitHub's self-repository syntax `$/path`.
            for local in {s["uses"] for s in steps if s.get("uses", "").startswith("$/")}:
                action = path / local.removeprefix("$/") / "action.yml"
                steps += yaml.safe_load(action.read_text())["runs"]["steps"]
            self.targets[workflow.name] = {
                t for s in steps for t in re.findall(r"\bmake ([a-z-]+)", s.get("run", ""))
            }

    def step(
        self, workflow: str, target: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the target as the workflow does; fail if the workflow does not call it."""
        assert target in self.targets[workflow], f"{workflow} does not run make {target}"
        return run(["make", target, *args], self.path, check=check)

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def commit(self, message: str) -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "--message", message)
        return self.git("rev-parse", "HEAD").strip()

    def rendered_image(self, env: str) -> str:
        kubectl = str(self.path / ".venv/bin/kubectl")
        manifests = run([kubectl, "kustomize", f"deploy/overlays/{env}"], self.path).stdout
        (deployment,) = [
            d for d in yaml.safe_load_all(manifests) if d and d["kind"] == "Deployment"
        ]
        image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image


def json_of(path: Path) -> Any:
    return json.loads(path.read_text())


def test_the_life_of_a_repository(tmp_path_factory: pytest.TempPathFactory) -> None:
    # 1. A team starts a repository; a bare repository stands in for GitHub.
    root = tmp_path_factory.mktemp("loop")
    repo = Repository(bake_into(root, lock=True, **ANSWERS))
    origin = root / "origin.git"
    run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], root)
    repo.git("remote", "add", "origin", str(origin))
    assert (repo.path / "src/churn_guard/train.py").is_file()

    # 2. Set up, train and push main (ci.yml sets up; train.yml trains and records the results).
    repo.step("ci.yml", "setup")
    repo.step("train.yml", "train")
    repo.step("train.yml", "push")
    repo.git("add", "uv.lock")
    repo.step("train.yml", "commit-results")
    repo.git("push", "--quiet", "origin", "main")
    champion = json_of(repo.path / "reports/metrics.json")

    # 3. A pull request changes a hyperparameter; its report compares it with main.
    repo.git("switch", "--quiet", "--create", "tune")
    params = repo.path / "params.yaml"
    params.write_text(
        params.read_text().replace("class_weight: [null, balanced]", "class_weight: [balanced]")
    )
    repo.step("train.yml", "train")
    repo.step("train.yml", "push")
    repo.step("train.yml", "commit-results")
    repo.step("train.yml", "report", "BASE=main")
    report = (repo.path / "reports/pr/report.md").read_text()
    assert "train.search.space.class_weight" in report
    assert "passes the gate" in report.split("\n\n")[1]
    assert "accuracy" in report
    repo.git("push", "--quiet", "origin", "tune")

    # 4. The merge releases: the Bento, the registry, and the digest written into staging.
    repo.git("switch", "--quiet", "main")
    repo.git("merge", "--quiet", "--no-ff", "tune", "--message", "Merge the tuning")
    repo.step("release.yml", "pull")
    repo.step("release.yml", "bento")
    first = f"{IMAGE}@{DIGESTS[0]}"
    repo.step("release.yml", "register", "ALIAS=staging", f"IMAGE={first}")
    repo.step("release.yml", "set-image", "ENV=staging", f"IMAGE={first}")
    repo.step("release.yml", "manifests")
    release = repo.commit(f"deploy(staging): {DIGESTS[0]}")
    repo.git("push", "--quiet", "origin", "main")
    assert repo.rendered_image("staging") == first
    application = yaml.safe_load((repo.path / "argocd/staging.yaml").read_text())
    assert application["spec"]["source"]["path"] == "deploy/overlays/staging"
    assert application["spec"]["source"]["targetRevision"] in {"main", "HEAD"}
    assert application["spec"]["source"]["repoURL"] == "https://github.com/Acme-ML/churn-guard"

    # 5. Promotion: a reviewed change copies the digest to production; the alias follows.
    repo.step("promote.yml", "promote")
    repo.step("promote.yml", "manifests")
    repo.commit("deploy(production): promote the staging image")
    assert repo.rendered_image("production") == first
    repo.step("promote.yml", "alias", "ENV=production")
    with sqlite3.connect(repo.path / "mlflow.db") as db:
        aliases = dict(db.execute("select alias, version from registered_model_aliases"))
    assert aliases["production"] == aliases["staging"]

    # 6. The world drifts: make drift says so, and the retrain path opens a branch.
    run(["uv", "run", "--locked", "python", "-c", DRIFTED], repo.path)
    drifted = repo.step("monitor.yml", "drift", "CURRENT=build/drifted.csv", check=False)
    assert drifted.returncode != 0, drifted.stdout
    assert "see reports/drift/summary.md" in drifted.stdout + drifted.stderr
    assert (repo.path / "reports/drift/summary.md").read_text().startswith("**Drift detected**")
    lock = (repo.path / "dvc.lock").read_text()
    repo.git("switch", "--quiet", "--create", "retrain")
    repo.step("retrain.yml", "refresh", "SOURCE=build/fresh.csv")
    repo.step("retrain.yml", "train")
    repo.step("retrain.yml", "push")
    repo.commit("retrain: fresh data, dvc.lock and reports")
    assert (repo.path / "dvc.lock").read_text() != lock
    assert json_of(repo.path / "reports/metrics.json") != champion
    assert "retrain" in repo.git("branch", "--list", "retrain")

    # 7. A bad release is rolled back by reverting its commit.
    repo.git("switch", "--quiet", "main")
    second = f"{IMAGE}@{DIGESTS[1]}"
    repo.step("release.yml", "set-image", "ENV=staging", f"IMAGE={second}")
    bad = repo.commit(f"deploy(staging): {DIGESTS[1]}")
    assert repo.rendered_image("staging") == second
    repo.git("revert", "--no-edit", bad)
    assert repo.rendered_image("staging") == first
    assert release in repo.git("log", "--format=%H")


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
