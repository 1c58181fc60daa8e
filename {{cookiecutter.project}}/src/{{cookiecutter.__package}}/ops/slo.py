"""deploy/base/slo.yaml from params.yaml: the thresholds kustomize puts into the alert rules and the
canary analysis."""

from pathlib import Path

from .. import cli
from ..params import Params, load

SLO = Path("deploy/base/slo.yaml")

HEADER = """\
# Written by `make manifests` from params.yaml (serve.slo, drift): edit params.yaml instead.
# kustomize copies these values into the alert rules and the canary analysis, and leaves this object
# out of what it renders.
apiVersion: v1
kind: ConfigMap
metadata:
  name: slo
  annotations:
    config.kubernetes.io/local-config: "true"
data:
"""


def thresholds(params: Params) -> dict[str, float]:
    """The numbers of slo.yaml; Prometheus measures durations in seconds."""
    return {
        "error_rate": params.serve.slo.error_rate,
        "p99_seconds": params.serve.slo.p99_ms / 1000,
        "rejected_rate": params.serve.slo.rejected_rate,
        "psi_alert": params.drift.psi_alert,
    }


def manifest(params: Params) -> str:
    """slo.yaml as params.yaml implies it."""
    values = thresholds(params)
    return HEADER + "".join(f'  {key}: "{value:g}"\n' for key, value in values.items())


def sync(root: Path) -> None:
    """Rewrite a stale slo.yaml and fail, as a formatter does: CI catches it, a laptop fixes it."""
    expected = manifest(load(root / "params.yaml"))
    path = root / SLO
    if not path.is_file() or path.read_text() != expected:
        path.write_text(expected)
        raise cli.UserError(
            f"{SLO} did not match params.yaml and is rewritten: review and commit it"
        )
