"""Canary releases: each overlay's release goes through judged steps, on the service's series."""

import re
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import manifests, slo
from tumor_classifier.ops.overlays import OVERLAYS
from tumor_classifier.params import load

from conftest import ROOT, Served, edit

NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def rendered(root: Path) -> dict[str, list[manifests.Object]]:
    """Each overlay's objects, as kustomize renders them."""
    return {
        path.parent.name: manifests.render(path.parent.relative_to(root), root)
        for path in sorted((root / OVERLAYS).glob("*/kustomization.yaml"))
    }


def one(objects: list[manifests.Object], kind: str) -> manifests.Object:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@pytest.mark.score("I6")
def test_every_release_goes_through_canary_steps_judged_against_the_slo() -> None:
    thresholds = slo.thresholds(load(ROOT / "params.yaml"))
    overlays = rendered(ROOT)
    assert set(overlays) == {"staging", "production"}
    for env, objects in overlays.items():
        assert manifests.canary_problems(objects, thresholds) == [], env
        steps = one(objects, "Rollout")["spec"]["strategy"]["canary"]["steps"]
        assert [s.get("setWeight", "analysis") for s in steps] == [10, "analysis", 50, "analysis"]


# Each way to lose the canary, and the line `make manifests` fails with.
LOST = [
    pytest.param(
        "deploy/base/rollout.yaml",
        "        - analysis: *judged\n",
        "",
        "Rollout/{name}: no analysis judges the canary at 50%",
        id="a-step-unjudged",
    ),
    pytest.param(
        "deploy/base/rollout.yaml",
        "      steps:\n",
        "      steps: []\n      unused:\n",
        "Rollout/{name}: canary weights [] do not rise",
        id="no-steps",
    ),
    pytest.param(
        "deploy/base/kustomization.yaml",
        "  - rollout.yaml\n",
        "",
        "0 Rollouts, not one",
        id="no-rollout",
    ),
    pytest.param(
        "deploy/base/kustomization.yaml",
        "      fieldPath: data.rejected_rate\n",
        "      fieldPath: data.error_rate\n",
        "rejected-rate passes on `result[0] <= 0.01`, not `result[0] <= 0.05`",
        id="threshold-not-its-slo",
    ),
    pytest.param(
        "deploy/base/analysistemplate.yaml",
        "      failureLimit: 0\n",
        "      failureLimit: 3\n",
        "AnalysisTemplate/{name}-canary: error-rate tolerates a breach (failureLimit must be 0)",
        id="a-breach-tolerated",
    ),
    pytest.param(
        "deploy/base/analysistemplate.yaml",
        'bentoml_service_request_duration_seconds_bucket{namespace="NAMESPACE", ',
        "bentoml_service_request_duration_seconds_bucket{",
        "p99-latency selects namespace [], not {name}-",
        id="every-namespace-judged",
    ),
    pytest.param(
        "deploy/base/analysistemplate.yaml",
        ', rollouts_pod_template_hash="',
        ', pod_template_hash="',
        "error-rate reads pods other than the canary's",
        id="stable-pods-judged",
    ),
]


@pytest.mark.parametrize(("path", "old", "new", "problem"), LOST)
def test_a_release_without_its_judged_canary_fails_make_manifests(
    project: Path, path: str, old: str, new: str, problem: str
) -> None:
    edit(project / path, old, new)
    with pytest.raises(UserError) as error:
        manifests.manifests(project)
    assert problem.replace("{name}", NAME) in str(error.value)


def series(query: str) -> set[str]:
    """The metric names a PromQL query selects (each is written with its label matchers)."""
    return set(re.findall(r"([A-Za-z_:][\w:]*)\{(?!\{)", STRINGS.sub('""', query)))


def exported(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {re.split(r"[{ ]", line)[0] for line in lines if line and not line.startswith("#")}


@pytest.mark.score("I6")
def test_the_canary_queries_read_series_the_service_exports(served: Served) -> None:
    # A refused request: the refusal counter has its series from then on.
    json = {"content-type": "application/json"}
    refused = urllib.request.Request(f"{served.url}/predict", b"{}", json)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(refused, timeout=10)
    names = exported(served.url)
    template = one(rendered(ROOT)["staging"], "AnalysisTemplate")
    queries = {m["name"]: m["provider"]["prometheus"]["query"] for m in template["spec"]["metrics"]}
    for measure, query in queries.items():
        assert series(query), measure
        assert series(query) <= names, f"{measure} reads {series(query) - names}"
    # A misspelt series is not among them: the check above can fail.
    assert not series(queries["error-rate"].replace("request_total", "requests_total")) <= names
