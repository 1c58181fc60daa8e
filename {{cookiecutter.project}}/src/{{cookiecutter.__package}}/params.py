"""params.yaml as typed sections: a typo or a wrong type fails with one line naming the key."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .cli import UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Task = Literal["classification", "regression"]


class DataParams(Section):
    target: str
    task: Literal["auto", "classification", "regression"] = "auto"
    categorical: list[str] = []
    drop: list[str] = []
    positive_class: str | None = None


class ProfileParams(Section):
    bins: int = Field(ge=2)
    top_correlations: int = Field(ge=1)


class ValidateParams(Section):
    range_margin: float = Field(ge=0)
    leak_score: float = Field(gt=0, le=1)
    accept_leaks: list[str] = []


class SplitParams(Section):
    test_size: float = Field(gt=0, lt=1)
    seed: int
    stratify: bool


class SearchParams(Section):
    kind: Literal["grid", "random"]
    n_iter: int = Field(ge=1)
    cv_folds: int = Field(ge=2)
    scoring: str
    n_jobs: int
    space: dict[str, Any]


class RegressionTrainParams(Section):
    """What a regression trains in place of the classification choices beside it."""

    estimator: str
    fixed: dict[str, Any] = {}
    baseline: str
    scoring: str
    space: dict[str, Any]


class TrainParams(Section):
    seed: int
    estimator: str
    fixed: dict[str, Any] = {}
    baseline: str
    search: SearchParams
    regression: RegressionTrainParams | None = None

    def for_task(self, task: Task) -> "TrainParams":
        """The choices of this task: the `regression` block replaces its keys for a regression."""
        if task == "classification":
            return self
        if self.regression is None:
            raise UserError(
                "the target is a quantity (a regression): add train.regression to params.yaml"
            )
        r = self.regression
        search = self.search.model_copy(update={"scoring": r.scoring, "space": r.space})
        update = {"estimator": r.estimator, "fixed": r.fixed, "baseline": r.baseline}
        return self.model_copy(update={**update, "search": search})


# A choice left to the pipeline, made from the data (and reported where it is used).
AUTO = "auto"


class SliceParams(Section):
    column: str | None  # auto: chosen by evaluate; null: no slices
    bins: int = Field(ge=1)


class EvaluateParams(Section):
    slice: SliceParams
    permutation_repeats: int = Field(ge=1)
    calibration_bins: int = Field(ge=2)
    uninformative_sigmas: float = Field(ge=0)
    latency_repeats: int = Field(ge=1)


class TaskGateParams(Section):
    metric: str
    baseline_margin: float
    min: dict[str, float] = {}
    max: dict[str, float] = {}
    slice_metric: str
    slice_floor: float
    slice_min_rows: int = Field(ge=1)


class GateParams(TaskGateParams):
    regression: TaskGateParams | None = None
    # Defaults: the report judges a champion by its own params.yaml, which may predate these.
    fail_uninformative: bool = False
    champion: str = "main"
    max_slowdown: float = Field(default=1.5, ge=1)

    def for_task(self, task: Task) -> TaskGateParams:
        """The thresholds of this task: the `regression` block holds a regression's own."""
        if task == "classification":
            return TaskGateParams(**self.model_dump(include=set(TaskGateParams.model_fields)))
        if self.regression is None:
            raise UserError("the model is a regression: add gate.regression to params.yaml")
        return self.regression


class ExportParams(Section):
    onnx: bool
    tolerance: float = Field(gt=0)
    regression_tolerance: float = Field(gt=0)


class SloParams(Section):
    p99_ms: float = Field(gt=0)
    error_rate: float = Field(ge=0, le=1)
    rejected_rate: float = Field(ge=0, le=1)


class ServeParams(Section):
    max_records: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    read_timeout: float = Field(gt=0)
    accept_unseen_categories: bool
    out_of_range: Literal["refuse", "flag"] = "refuse"
    stream_max_deliveries: int = Field(ge=1)
    slo: SloParams


class ReferenceParams(Section):
    rows: int = Field(ge=100)
    bins: int = Field(ge=2)


class DriftParams(Section):
    window: int = Field(ge=10)
    psi_alert: float = Field(gt=0)
    share: float = Field(gt=0, le=1)
    max_missing_share: float = Field(ge=0, le=1)
    log_sample: float = Field(ge=0, le=1)


class Params(Section):
    data: DataParams
    profile: ProfileParams
    validate_: ValidateParams = Field(alias="validate")
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    gate: GateParams
    reference: ReferenceParams
    export: ExportParams
    serve: ServeParams
    drift: DriftParams


# libyaml's safe loader where PyYAML's wheel has it: the same documents, parsed 5 to 8 times
# faster than by the pure-Python one (params.yaml and data/schema.yaml start every command).
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str) -> Any:
    """A YAML document, loaded safely."""
    return yaml.load(text, Loader=SafeLoader)


def load(path: Path = Path("params.yaml")) -> Params:
    """Read and check params.yaml."""
    try:
        return Params.model_validate(parse_yaml(path.read_text()))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{path}: {key}: {first['msg']}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error.__class__.__name__})") from None


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested values under flat `section.key` names, as MLflow and the PR report show params."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
