"""Train stage: a scikit-learn Pipeline tuned by cross-validated search, and a baseline to beat;
a classifier or a regressor, as the target says (data.task)."""

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.models import infer_signature
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .. import cli, tracking
from ..data import feature_columns, model_input, read_table, task_of
from ..lineage import md5
from ..metrics import Candidate, CrossValidation
from ..params import DataParams, Params, SearchParams, TrainParams, flatten, load

DISTRIBUTIONS = {
    "log_uniform": lambda low, high: stats.loguniform(low, high),
    "uniform": lambda low, high: stats.uniform(low, high - low),
    "int_uniform": lambda low, high: stats.randint(low, high + 1),
}


@dataclass(frozen=True)
class Fitted:
    model: Pipeline
    baseline: Pipeline
    cv: CrossValidation


def estimator(dotted: str, seed: int, **arguments: Any) -> BaseEstimator:
    """An estimator from its import path, seeded when it takes a random_state."""
    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise cli.UserError(
            f"cannot import estimator {dotted!r}: use a path like "
            "sklearn.ensemble.RandomForestClassifier"
        ) from None
    try:
        model = cls(**arguments)
    except TypeError as error:
        raise cli.UserError(f"{dotted}: {error}") from None
    if "random_state" in model.get_params():
        model.set_params(random_state=seed)
    return model


def pipeline(model: BaseEstimator, numeric: list[str], categorical: list[str]) -> Pipeline:
    """Impute and scale numbers, one-hot encode categories (missing is its own category)."""
    transformers = []
    if numeric:
        steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        transformers.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        transformers.append(("categorical", OneHotEncoder(handle_unknown="ignore"), categorical))
    return Pipeline([("features", ColumnTransformer(transformers)), ("model", model)])


def space(search: SearchParams) -> dict[str, Any]:
    """The space of the pipeline's `model` step: lists, or distributions for random search."""
    grid: dict[str, Any] = {}
    for name, values in search.space.items():
        if isinstance(values, list):
            grid[f"model__{name}"] = values
        elif isinstance(values, dict) and len(values) == 1 and search.kind == "random":
            ((kind, bounds),) = values.items()
            if kind not in DISTRIBUTIONS or not isinstance(bounds, list) or len(bounds) != 2:
                raise cli.UserError(
                    f"train.search.space.{name}: use one of "
                    f"{', '.join(DISTRIBUTIONS)} with [low, high]"
                )
            grid[f"model__{name}"] = DISTRIBUTIONS[kind](*bounds)
        else:
            raise cli.UserError(
                f"train.search.space.{name}: give a list of values "
                "(distributions need search.kind: random)"
            )
    return grid


def fit(frame: pd.DataFrame, data: DataParams, params: TrainParams) -> Fitted:
    """Search the task's space with k-fold CV (stratified by class for a classification); refit
    the best on all training rows."""
    numeric, categorical = feature_columns(list(frame.columns), data)
    task = task_of(frame[data.target], data)
    params = params.for_task(task)
    y = frame[data.target].astype(str if task == "classification" else float)
    x = model_input(frame, numeric, categorical)
    model = pipeline(estimator(params.estimator, params.seed, **params.fixed), numeric, categorical)
    kfold = StratifiedKFold if task == "classification" else KFold
    folds = kfold(n_splits=params.search.cv_folds, shuffle=True, random_state=params.seed)
    common = {
        "scoring": params.search.scoring,
        "cv": folds,
        "n_jobs": params.search.n_jobs,
        "error_score": "raise",
    }
    if params.search.kind == "grid":
        search = GridSearchCV(model, space(params.search), **common)
    else:
        search = RandomizedSearchCV(
            model,
            space(params.search),
            n_iter=params.search.n_iter,
            random_state=params.seed,
            **common,
        )
    try:
        search.fit(x, y)
    except ValueError as error:
        raise cli.UserError(f"training failed: {str(error).splitlines()[0]}") from None
    baseline = pipeline(estimator(params.baseline, params.seed), numeric, categorical).fit(x, y)
    best = search.best_index_
    results = search.cv_results_
    cv = CrossValidation(
        score=float(search.best_score_),
        std=float(results["std_test_score"][best]),
        scoring=params.search.scoring,
        best_params={k.removeprefix("model__"): v for k, v in search.best_params_.items()},
        candidates=[
            Candidate(
                params={k.removeprefix("model__"): v for k, v in candidate.items()},
                mean=float(results["mean_test_score"][i]),
                std=float(results["std_test_score"][i]),
            )
            for i, candidate in enumerate(results["params"])
        ],
    )
    return Fitted(search.best_estimator_, baseline, cv)


def log(fitted: Fitted, params: Params, x: pd.DataFrame, model_path: Path) -> None:
    """Params, one nested run per search candidate, the CV score and the model, in MLflow."""
    model_md5 = md5(model_path)
    with mlflow.start_run(run_name="train"):
        mlflow.set_tags({"stage": "train", "model_md5": model_md5})
        mlflow.log_params(
            flatten({"data": params.data.model_dump(), "train": params.train.model_dump()})
        )
        for i, candidate in enumerate(fitted.cv.candidates):
            with mlflow.start_run(run_name=f"candidate-{i}", nested=True):
                mlflow.log_params(candidate.params)
                mlflow.log_metrics({"cv_score": candidate.mean, "cv_std": candidate.std})
        mlflow.log_metrics({"cv_score": fitted.cv.score, "cv_std": fitted.cv.std})
        example = x.head(5)
        # A classifier answers probabilities, a regressor a number.
        answer = getattr(fitted.model, "predict_proba", fitted.model.predict)
        mlflow.sklearn.log_model(
            fitted.model,
            name="model",
            tags={"model_md5": model_md5},
            signature=infer_signature(example, answer(example)),
            input_example=example,
            # MLflow stores the model with skops, which trusts only what it is told to.
            skops_trusted_types=["numpy.dtype"],
            # Explicit requirements skip MLflow's slow environment inference.
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
        )


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "train", "models", "report")
    params = load()
    tracking.start()  # an unusable tracking store fails before the training time is spent
    frame = read_table(args.train)
    fitted = fit(frame, params.data, params.train)
    args.models.mkdir(parents=True, exist_ok=True)
    joblib.dump(fitted.model, args.models / "model.joblib")
    joblib.dump(fitted.baseline, args.models / "baseline.joblib")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    # default=str: a random search draws numpy numbers, which JSON does not know.
    args.report.write_text(json.dumps(fitted.cv.model_dump(), indent=2, default=str) + "\n")
    numeric, categorical = feature_columns(list(frame.columns), params.data)
    log(fitted, params, model_input(frame, numeric, categorical), args.models / "model.joblib")


if __name__ == "__main__":
    cli.run(main)
