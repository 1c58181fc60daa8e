"""The pipeline's results as typed records: what train, evaluate and gate write as JSON, and what
the gate, the PR report and the registry read back."""

import json
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from .cli import UserError


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def read(cls, path: Path) -> Self:
        """The record a stage wrote; a missing or foreign file is one line naming the stage."""
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path} not found: run `make train`") from None
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "(top)"
            raise UserError(f"{path}: {key}: {first['msg']}; run `make train`") from None


class Scores(Record):
    """One model's scores on the test set, which the gate's thresholds name. A score added to
    evaluate.scores() beyond these is kept too, so older and newer metrics files still compare."""

    model_config = ConfigDict(extra="allow", frozen=True)

    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    log_loss: float

    def scores(self) -> dict[str, float]:
        """Every score by name: the six above, then any added ones."""
        extra = {k: v for k, v in (self.model_extra or {}).items() if isinstance(v, int | float)}
        return {name: getattr(self, name) for name in Scores.model_fields} | extra


class ClassScores(Record):
    precision: float
    recall: float
    f1: float
    support: int


class SliceScores(Record):
    rows: int
    accuracy: float
    f1: float


# The scores a slice has, which the gate's slice floor may name.
SLICE_SCORES = tuple(name for name in SliceScores.model_fields if name != "rows")


class Metrics(Scores):
    """reports/metrics.json: the model's scores, the baseline's, per class and per slice, and
    the features no better than noise."""

    baseline: Scores
    per_class: dict[str, ClassScores]
    slices: dict[str, SliceScores]
    uninformative: list[str] = []
    # What evaluate chose where params.yaml left it to the data (older files lack them).
    positive_class: str | None = None
    slice_column: str | None = None


class Latency(Record):
    """reports/latency.json: CPU milliseconds the model and its baseline take to predict the same
    1,000 rows, timed in turn in one run (medians). Their ratio is the model's own cost, which runs
    on different machines can compare; the milliseconds alone are the machine's."""

    rows: int
    model_ms: float
    baseline_ms: float
    relative: float  # the median over the repeats of model / baseline, each pair timed in turn


class Staleness(Record):
    """reports/staleness.json: the champion (the model committed on gate.champion) scored on this
    run's test set beside the new model: what keeping the old model on today's data would cost.
    Without a champion to score, `note` says why and the scores are empty."""

    champion: str  # the revision
    champion_md5: str | None = None
    champion_scores: dict[str, float] = {}
    # The new model's score minus the champion's, per metric, on the same rows (for an error
    # metric such as log_loss or rmse, a negative gap is the new model doing better).
    gap: dict[str, float] = {}
    note: str | None = None


class RegressionScores(Record):
    """A regression's scores on the test set, in the target's units (RMSE, MAE) and R²."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rmse: float
    mae: float
    r2: float

    def scores(self) -> dict[str, float]:
        extra = {k: v for k, v in (self.model_extra or {}).items() if isinstance(v, int | float)}
        return {name: getattr(self, name) for name in RegressionScores.model_fields} | extra


class RegressionSliceScores(Record):
    rows: int
    rmse: float
    mae: float
    r2: float


class RegressionMetrics(RegressionScores):
    """reports/metrics.json of a regression: the model's scores, the baseline's, per slice."""

    task: Literal["regression"]
    baseline: RegressionScores
    slices: dict[str, RegressionSliceScores]
    uninformative: list[str] = []
    slice_column: str | None = None  # what evaluate chose, where params.yaml left it to the data


# Scores where less is better: a gate holds them under a ceiling; a slice's worst is its highest.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
REGRESSION_SLICE_SCORES = ("rmse", "mae", "r2")


def read_metrics(path: Path) -> Metrics | RegressionMetrics:
    """reports/metrics.json of either task: a regression's says so."""
    try:
        task = json.loads(path.read_text()).get("task")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        task = None
    return (RegressionMetrics if task == "regression" else Metrics).read(path)


class Candidate(Record):
    params: dict[str, Any]
    mean: float
    std: float


class DataSummary(Record):
    """reports/validation.json: what the validate stage saw in the data it let through."""

    rows: int
    columns: int
    checks: int
    missing: dict[str, int]
    classes: dict[str, int]  # rows of each class; none for a regression
    unlabelled: int = 0  # rows dropped because their target is missing


class CrossValidation(Record):
    """reports/train.json: the search's choice and the cross-validated score of every candidate."""

    score: float
    std: float
    scoring: str
    best_params: dict[str, Any]
    candidates: list[Candidate]
