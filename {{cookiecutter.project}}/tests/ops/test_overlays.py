"""`make set-image`, `make promote`: a release changes one image line of one overlay."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tumor_classifier.cli import UserError
from tumor_classifier.ops import manifests, overlays

from conftest import ROOT

# The Kubernetes name of every object: the project's name.
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
IMAGE = f"ghcr.io/example-org/{NAME}@sha256:" + "ab12" * 16


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_set_image_changes_only_the_image_line_and_is_idempotent(project: Path) -> None:
    before = snapshot(project)
    patch = project / overlays.OVERLAYS / "staging/deployment.yaml"
    assert overlays.set_image(project / overlays.OVERLAYS, "staging", IMAGE) == [patch]
    after = snapshot(project)
    assert [path for path in before if before[path] != after[path]] == [patch]
    changed = [
        (old, new)
        for old, new in zip(
            before[patch].decode().splitlines(), after[patch].decode().splitlines(), strict=True
        )
        if old != new
    ]
    assert [new for _, new in changed] == [f"          image: {IMAGE}"]
    assert overlays.set_image(project / overlays.OVERLAYS, "staging", IMAGE) == []
    assert snapshot(project) == after
    manifests.manifests(project)


def test_promotion_copies_the_staging_image_to_production(project: Path) -> None:
    folder = project / overlays.OVERLAYS
    overlays.set_image(folder, "staging", IMAGE)
    assert overlays.image_of(folder, "staging") == IMAGE
    assert overlays.image_of(folder, "production") != IMAGE
    overlays.set_image(folder, "production", overlays.image_of(folder, "staging"))
    assert overlays.image_of(folder, "production") == IMAGE


def test_set_image_keeps_line_endings_quotes_and_comments(tmp_path: Path) -> None:
    overlay = tmp_path / "qa"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_bytes(b"resources: []\r\n")
    (overlay / "patch.yaml").write_bytes(
        b'containers:\r\n  - name: a\r\n    image: "old:1"  # pinned\r\n'
        b"  - image: old@sha256:00\r\n"
    )
    overlays.set_image(tmp_path, "qa", IMAGE)
    assert (overlay / "patch.yaml").read_bytes() == (
        f"containers:\r\n  - name: a\r\n    image: {IMAGE}  # pinned\r\n  - image: {IMAGE}\r\n"
    ).encode()
    assert (overlay / "kustomization.yaml").read_bytes() == b"resources: []\r\n"


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/example-org/tumor-classifier:latest",
        "ghcr.io/example-org/tumor-classifier@sha256:abc123",
        "ghcr.io/example-org/tumor-classifier:v1@sha256:" + "ab12" * 16,
        "ghcr.io/Example-Org/tumor-classifier@sha256:" + "ab12" * 16,
        "@sha256:" + "ab12" * 16,
    ],
)
def test_set_image_refuses_anything_but_an_image_by_digest(project: Path, image: str) -> None:
    with pytest.raises(UserError, match="not an image by digest"):
        overlays.set_image(project / overlays.OVERLAYS, "staging", image)


@pytest.mark.parametrize("env", ["qa", "../base", ""])
def test_set_image_refuses_an_unknown_environment(project: Path, env: str) -> None:
    before = snapshot(project)
    with pytest.raises(UserError, match=r"no such overlay in .*; one of production, staging$"):
        overlays.set_image(project / overlays.OVERLAYS, env, IMAGE)
    assert snapshot(project) == before


def test_command_line_fails_in_one_line(project: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.ops.overlays",
            "set-image",
            "staging",
            "nginx:latest",
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "overlays: nginx:latest: not an image by digest, <repository>@sha256:<64 hex digits>\n"
    )


# Where the rest of the repository names an environment: `make` variables and arguments, overlay
# paths, and the GitHub environments of workflow jobs.
NAMED = re.compile(
    r"\b(?:ENV|ALIAS)\s*\??=\s*([a-z][a-z0-9-]*)|deploy/overlays/([a-z][a-z0-9-]*)"
    r"|overlays promote ([a-z][a-z0-9-]*) ([a-z][a-z0-9-]*)"
)


def named(text: str) -> set[str]:
    return {name for match in NAMED.finditer(text) for name in match.groups() if name}


def environment_problems(root: Path) -> list[str]:
    """Where a declaration of the environments disagrees with their home, the overlay folders."""
    home = set(overlays.environments(root / overlays.OVERLAYS))
    problems = []
    used: set[str] = set()
    sources = {"Makefile": (root / "Makefile").read_text()}
    for workflow in sorted((root / ".github/workflows").glob("*.y*ml")):
        text = workflow.read_text()
        jobs = (yaml.safe_load(text) or {}).get("jobs", {}).values()
        environments = [job.get("environment") for job in jobs if job.get("environment")]
        text += "".join(f"\nENV={e['name'] if isinstance(e, dict) else e}" for e in environments)
        sources[f".github/workflows/{workflow.name}"] = text
    for name, text in sources.items():
        used |= named(text)
        problems += [
            f"{name} names {env}, which is no overlay" for env in sorted(named(text) - home)
        ]
    problems += [f"no make target or workflow deploys {env}" for env in sorted(home - used)]
    argocd = [yaml.safe_load(path.read_text()) for path in sorted((root / "argocd").glob("*.yaml"))]
    applications = {
        Path(app["spec"]["source"]["path"]).name: app
        for app in argocd
        if app["kind"] == "Application"
    }
    if set(applications) != home:
        problems.append(f"argocd/ Applications sync {sorted(applications)}, not {sorted(home)}")
    (project,) = [obj for obj in argocd if obj["kind"] == "AppProject"]
    destinations = {d["namespace"] for d in project["spec"]["destinations"]}
    namespaces = {app["spec"]["destination"]["namespace"] for app in applications.values()}
    if destinations != namespaces:
        problems.append(
            f"argocd/project.yaml allows {sorted(destinations)}, not {sorted(namespaces)}"
        )
    return problems


def test_every_declaration_of_the_environments_follows_the_overlays() -> None:
    assert overlays.environments(ROOT / overlays.OVERLAYS) == ["production", "staging"]
    assert environment_problems(ROOT) == []


def test_an_environment_declared_in_one_place_only_is_named(tmp_path: Path) -> None:
    for name in ("Makefile", ".github", "argocd", "deploy"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    shutil.copytree(tmp_path / "deploy/overlays/staging", tmp_path / "deploy/overlays/qa")
    release = tmp_path / ".github/workflows/release.yml"
    release.write_text(release.read_text().replace("ENV=staging", "ENV=stage"))
    assert environment_problems(tmp_path) == [
        ".github/workflows/release.yml names stage, which is no overlay",
        "no make target or workflow deploys qa",
        "argocd/ Applications sync ['production', 'staging'], not ['production', 'qa', 'staging']",
    ]
