"""The end-to-end job's own parts, checked where it cannot run: its objects and its skip line."""

import os
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import e2e
import kubernetes_validate
import yaml
from conftest import TEMPLATE, Bake

URL = "git://git.git.svc.cluster.local/tumor-classifier.git"


def test_the_objects_it_applies_are_valid(bake: Bake) -> None:
    project = bake()
    server = list(yaml.safe_load_all(e2e.GIT_SERVER.format(image="argocd:v0", repository="r.git")))
    for obj in server:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    apps = {obj["kind"]: obj for obj in e2e.applications(project, URL)}
    assert set(apps) == {"AppProject", "Application"}
    source = apps["Application"]["spec"]["source"]
    assert (source["repoURL"], source["path"]) == (URL, "deploy/overlays/staging")
    assert apps["Application"]["spec"]["project"] == apps["AppProject"]["metadata"]["name"]
    assert any(fnmatch(URL, repo) for repo in apps["AppProject"]["spec"]["sourceRepos"])


def test_make_e2e_skips_with_one_line_without_docker(tmp_path: Path) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 1\n")  # a client whose engine does not answer
    docker.chmod(0o755)
    env = os.environ | {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["make", "--silent", "e2e"], cwd=TEMPLATE, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "e2e: skipped, it needs Linux and a Docker engine that answers (as on GitHub's runners)"
    ]
