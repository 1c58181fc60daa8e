"""params.yaml as typed sections: a typo or a wrong type fails with one line naming the key."""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cli import UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Data(Section):
    target: str
    categorical: list[str] = []
    drop: list[str] = []
    positive_class: str | None = None


class Profile(Section):
    bins: int = Field(ge=2)
    top_correlations: int = Field(ge=1)


class Validate(Section):
    range_margin: float = Field(ge=0)


class Split(Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int
    stratify: bool


class Search(Section):
    kind: Literal["grid", "random"]
    n_iter: int = Field(ge=1)
    cv_folds: int = Field(ge=2)
    scoring: str
    n_jobs: int
    space: dict[str, Any]


class Train(Section):
    seed: int
    estimator: str
    fixed: dict[str, Any] = {}
    baseline: str
    search: Search


class Slice(Section):
    column: str | None
    bins: int = Field(ge=1)


class Evaluate(Section):
    slice: Slice
    permutation_repeats: int = Field(ge=1)
    calibration_bins: int = Field(ge=2)


class Gate(Section):
    metric: str
    baseline_margin: float
    min: dict[str, float] = {}
    max: dict[str, float] = {}
    slice_metric: str
    slice_floor: float
    slice_min_rows: int = Field(ge=1)


class Export(Section):
    onnx: bool
    tolerance: float = Field(gt=0)


class Slo(Section):
    p99_ms: float = Field(gt=0)
    error_rate: float = Field(ge=0, le=1)


class Serve(Section):
    max_records: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    accept_unseen_categories: bool
    slo: Slo


class Reference(Section):
    rows: int = Field(ge=100)
    bins: int = Field(ge=2)


class Drift(Section):
    window: int = Field(ge=10)
    psi_alert: float = Field(gt=0)
    share: float = Field(gt=0, le=1)
    max_missing_share: float = Field(ge=0, le=1)
    log_sample: float = Field(ge=0, le=1)


class Params(Section):
    data: Data
    profile: Profile
    validate_: Validate = Field(alias="validate")
    split: Split
    train: Train
    evaluate: Evaluate
    gate: Gate
    reference: Reference
    export: Export
    serve: Serve
    drift: Drift


def load(path: Path = Path("params.yaml")) -> Params:
    """Read and check params.yaml."""
    try:
        return Params.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{path}: {key}: {first['msg']}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error.__class__.__name__})") from None
