"""Render tier: every option combination bakes into the exact file set of clean, parseable files."""

import hashlib
import itertools
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ENV, OFFLINE, TEMPLATE, Bake

PYTHON_VERSIONS = ["3.11", "3.12", "3.13"]
DVC_REMOTES = ["local", "s3", "gs", "azure"]
# Options that change files interact: bake their product.
COMBINATIONS = list(itertools.product(PYTHON_VERSIONS, DVC_REMOTES))

# The generated package's modules and test files (the package takes the project's name).
MODULES = [
    "__init__",
    "cli",
    "contract",
    "data",
    "figures",
    "lineage",
    "metrics",
    "params",
    "render",
    "roles",
    "tracking",
    "pipeline/__init__",
    "pipeline/evaluate",
    "pipeline/export",
    "pipeline/gate",
    "pipeline/profile",
    "pipeline/reference",
    "pipeline/split",
    "pipeline/train",
    "pipeline/validate",
    "serving/__init__",
    "serving/batch",
    "serving/bundle",
    "serving/docs",
    "serving/guards",
    "serving/monitor",
    "serving/predict",
    "serving/service",
    "serving/stream",
    "serving/transport",
    "ops/__init__",
    "ops/bento",
    "ops/changed",
    "ops/charts",
    "ops/doctor",
    "ops/drift",
    "ops/image",
    "ops/loadtest",
    "ops/manifests",
    "ops/overlays",
    "ops/plots",
    "ops/refresh",
    "ops/register",
    "ops/remote",
    "ops/report",
    "ops/revisions",
    "ops/score",
    "ops/slo",
    "ops/writeback",
]
TESTS = [
    "conftest",
    "test_commands",
    "test_contract",
    "test_data",
    "test_layout",
    "test_params",
    "test_roles",
    "test_stability",
    "test_tracking",
    "pipeline/test_evaluate",
    "pipeline/test_export",
    "pipeline/test_gate",
    "pipeline/test_pipeline",
    "pipeline/test_profile",
    "pipeline/test_reference",
    "pipeline/test_split",
    "pipeline/test_train",
    "pipeline/test_validate",
    "serving/test_batch",
    "serving/test_fuzz",
    "serving/test_guards",
    "serving/test_monitor",
    "serving/test_predict",
    "serving/test_service",
    "serving/test_stream",
    "ops/test_canary",
    "ops/test_changed",
    "ops/test_charts",
    "ops/test_doctor",
    "ops/test_drift",
    "ops/test_image",
    "ops/test_loadtest",
    "ops/test_manifests",
    "ops/test_overlays",
    "ops/test_refresh",
    "ops/test_register",
    "ops/test_remote",
    "ops/test_report",
    "ops/test_score",
    "ops/test_slo",
    "ops/test_writeback",
]
COMMON_FILES = {
    "argocd/kustomization.yaml",
    "argocd/production.yaml",
    "argocd/project.yaml",
    "argocd/staging.yaml",
    "deploy/base/analysistemplate.yaml",
    "deploy/base/batch-alerts.yaml",
    "deploy/base/cronjob.yaml",
    "deploy/base/dashboard.json",
    "deploy/base/deployment.yaml",
    "deploy/base/hpa.yaml",
    "deploy/base/kustomization.yaml",
    "deploy/base/networkpolicy.yaml",
    "deploy/base/pdb.yaml",
    "deploy/base/prometheusrule.yaml",
    "deploy/base/rollout.yaml",
    "deploy/base/service.yaml",
    "deploy/base/serviceaccount.yaml",
    "deploy/base/servicemonitor.yaml",
    "deploy/base/slo.yaml",
    "deploy/image/Dockerfile",
    "deploy/overlays/production/deployment.yaml",
    "deploy/overlays/production/hpa.yaml",
    "deploy/overlays/production/kustomization.yaml",
    "deploy/overlays/staging/deployment.yaml",
    "deploy/overlays/staging/hpa.yaml",
    "deploy/overlays/staging/kustomization.yaml",
    "deploy/components/stream/deployment.yaml",
    "deploy/components/stream/kustomization.yaml",
    "deploy/components/stream/networkpolicy.yaml",
    "deploy/components/stream/podmonitor.yaml",
    "deploy/components/stream/scaledobject.yaml",
    "deploy/transformers/image-to-jobs.yaml",
    "deploy/transformers/kustomization.yaml",
    "deploy/transformers/namespace-in-alerts.yaml",
    "bentofile.yaml",
    ".dvc/.gitignore",
    ".dvc/config",
    ".dvcignore",
    ".github/actions/dvc-remote/action.yml",
    ".github/actions/setup/action.yml",
    ".github/dependabot.yml",
    ".github/workflows/ci.yml",
    ".github/workflows/doctor.yml",
    ".github/workflows/monitor.yml",
    ".github/workflows/promote.yml",
    ".github/workflows/release.yml",
    ".github/workflows/retrain.yml",
    ".github/workflows/template.yml",
    ".github/workflows/train.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Makefile",
    "README.md",
    "data/.gitignore",
    "data/raw.csv",
    "data/raw.csv.dvc",
    "data/schema.yaml",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    *(f"src/{{package}}/{module}.py" for module in MODULES),
    "src/{package}/ops/rubric.yaml",
    *(f"tests/{test}.py" for test in TESTS),
}
VARIANT_FILES: dict[str, set[str]] = {remote: set() for remote in DVC_REMOTES}

# `${{` is GitHub's expression syntax, `{{args.` Argo Rollouts' (deploy/base/analysistemplate.yaml).
JINJA = re.compile(r"(?<!\$)\{\{(?!args\.)|\{%|\bcookiecutter\b")


def files(root: Path) -> set[str]:
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts[:1]
    }


@pytest.mark.parametrize(("python_version", "dvc_remote"), COMBINATIONS)
def test_bakes_exact_file_set(bake: Bake, python_version: str, dvc_remote: str) -> None:
    project = bake(python_version=python_version, dvc_remote=dvc_remote)
    expected = COMMON_FILES | VARIANT_FILES[dvc_remote]
    assert files(project) == {name.format(package="tumor_classifier") for name in expected}
    assert (project / ".python-version").read_text().strip() == python_version
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python_version},<3.14"
    dvc = next(d for d in pyproject["dependency-groups"]["pipeline"] if d.startswith("dvc"))
    assert dvc == ("dvc>=3.60" if dvc_remote == "local" else f"dvc[{dvc_remote}]>=3.60")
    # The image's runtime holds the fsspec driver of its remote kind, and no other (the storage tier
    # runs one of them).
    drivers = {"s3": "s3fs", "gs": "gcsfs", "azure": "adlfs"}
    runtime = {re.split(r"[<>=\[]", d)[0] for d in pyproject["project"]["dependencies"]}
    expected_drivers = {drivers[dvc_remote]} if dvc_remote in drivers else set()
    assert runtime & set(drivers.values()) == expected_drivers
    config = (project / ".dvc/config").read_text()
    scheme = {"local": "~/", "s3": "s3://", "gs": "gs://", "azure": "azure://"}[dvc_remote]
    assert f"remote = {dvc_remote}" in config
    assert f"url = {scheme}" in config


@pytest.mark.parametrize(("python_version", "dvc_remote"), COMBINATIONS)
def test_no_template_syntax_left(bake: Bake, python_version: str, dvc_remote: str) -> None:
    project = bake(python_version=python_version, dvc_remote=dvc_remote)
    leftovers = [
        f"{name}: {match.group()}"
        for name in sorted(files(project))
        for match in [JINJA.search((project / name).read_text())]
        if match
    ]
    assert leftovers == []


def test_structured_files_parse(bake: Bake) -> None:
    project = bake()
    parsers = {
        ".yml": lambda text: list(yaml.safe_load_all(text)),
        ".yaml": lambda text: list(yaml.safe_load_all(text)),
        ".toml": tomllib.loads,
        ".json": json.loads,
    }
    checked = []
    for name in sorted(files(project)):
        parse = parsers.get(Path(name).suffix)
        if parse:
            parse((project / name).read_text())
            checked.append(name)
    assert ".github/workflows/ci.yml" in checked
    assert "pyproject.toml" in checked


# The extremes of the free answers: the package name lands in imports and command lines, so a
# long one pushes lines past the limit and a short one moves imports in the sort.
SHORTEST = {"name": "A", "project": "a", "author": "A", "github_owner": "a", "description": "A"}
LONGEST = {
    "name": "An exceptionally long and descriptive project name",
    "project": "-".join(["a" * 10, "b" * 10, "c" * 10, "d" * 7]),  # 40: the longest allowed
    "author": "The Machine Learning Platform Team of a Large Organisation",
    "github_owner": "-".join(["o" * 19, "w" * 19]),  # 39: GitHub's longest
    "description": "A" + " very" * 40 + " long description.",
}
EXTREMES = [
    pytest.param(
        answers | {"python_version": version, "dvc_remote": remote}, id=f"{kind}-{version}-{remote}"
    )
    for kind, answers in (("shortest", SHORTEST), ("longest", LONGEST))
    for version, remote in zip(itertools.cycle(PYTHON_VERSIONS), DVC_REMOTES, strict=False)
]


@pytest.mark.parametrize("answers", EXTREMES)
def test_generated_code_is_ruff_clean(bake: Bake, answers: dict[str, str]) -> None:
    project = bake(**answers)
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = subprocess.run(command, cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("python_version", PYTHON_VERSIONS)
def test_the_dockerfile_passes_hadolint(bake: Bake, python_version: str) -> None:
    dockerfile = bake(python_version=python_version) / "deploy/image/Dockerfile"
    hadolint = str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    # A compiler installed the careless way is refused: the check is live.
    dockerfile.write_text(dockerfile.read_text() + "RUN apt-get install gcc\n")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert "DL3008" in result.stdout


def test_python_modules_hold_no_jinja() -> None:
    modules = list((TEMPLATE / "{{cookiecutter.project}}").rglob("*.py"))
    assert modules
    assert [str(m) for m in modules if re.search(r"\{\{|\{%", m.read_text())] == []


def test_package_takes_the_project_name(bake: Bake) -> None:
    project = bake(project="churn-model")
    assert (project / "src/churn_model/pipeline/train.py").is_file()
    assert [
        name for name in files(project) if "tumor_classifier" in (project / name).read_text()
    ] == []
    assert "python -m churn_model.pipeline.train" in (project / "dvc.yaml").read_text()
    assert "from churn_model import" in (project / "tests/conftest.py").read_text()


def test_raw_data_matches_its_dvc_file() -> None:
    data = TEMPLATE / "{{cookiecutter.project}}/data"
    raw = (data / "raw.csv").read_bytes()
    entry = yaml.safe_load((data / "raw.csv.dvc").read_text())["outs"][0]
    assert entry == {
        "md5": hashlib.md5(raw).hexdigest(),
        "size": len(raw),
        "hash": "md5",
        "path": "raw.csv",
    }


def test_first_commit_holds_every_file_but_the_data(bake: Bake) -> None:
    project = bake()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(tracked) == files(project) - {"data/raw.csv"}
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""


def test_a_bake_that_cannot_lock_says_so_in_one_line_and_ci_refuses_it(tmp_path: Path) -> None:
    baked = subprocess.run(
        ["cookiecutter", "--no-input", "--output-dir", str(tmp_path), str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=ENV | OFFLINE,
    )
    assert baked.returncode == 0, baked.stderr
    assert [line for line in baked.stdout.splitlines() if "uv.lock" in line] == [
        "uv.lock is not written (no package index and no cache of it): where PyPI is reachable, "
        "run `uv lock && git add uv.lock && git commit -m 'Lock the environment'`"
    ]
    project = tmp_path / "tumor-classifier"
    assert not (project / "uv.lock").exists()
    setup = subprocess.run(
        ["make", "setup"], cwd=project, capture_output=True, text=True, env=ENV | {"CI": "true"}
    )
    assert setup.returncode != 0
    assert setup.stderr.splitlines()[0] == (
        "uv.lock is not committed: run `uv lock` where PyPI is reachable and commit uv.lock"
    )
