"""The alert thresholds have one home, params.yaml; slo.yaml is derived from it and committed."""

from pathlib import Path

import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.ops import manifests, slo
from tumor_classifier.ops.overlays import OVERLAYS
from tumor_classifier.params import Params

from conftest import ROOT, edit


def test_slo_file_holds_the_thresholds_of_params(project_params: Params) -> None:
    # The alert thresholds have one home, params.yaml; slo.yaml is derived from it and committed.
    assert (ROOT / slo.SLO).read_text() == slo.manifest(project_params)


def test_stale_slo_file_is_rewritten_and_fails_once(project: Path) -> None:
    edit(project / "params.yaml", "    p99_ms: 100", "    p99_ms: 250")
    with pytest.raises(UserError, match=r"slo.yaml did not match params.yaml and is rewritten"):
        manifests.manifests(project)
    manifests.manifests(project)
    (rule,) = [
        obj
        for obj in manifests.render(OVERLAYS / "staging", project)
        if obj["kind"] == "PrometheusRule" and not obj["metadata"]["name"].endswith("-batch")
    ]
    exprs = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert exprs["ServiceLatencyAboveSLO"].endswith("> 0.25")
    assert exprs["ServiceErrorRateAboveSLO"].endswith("> 0.01")
    assert exprs["ModelFeatureDrift"].endswith("> 0.2")
