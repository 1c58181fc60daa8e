"""Train stage: the searched pipeline and its baseline, on numeric and categorical data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tumor_classifier.cli import UserError
from tumor_classifier.data import feature_columns, model_input
from tumor_classifier.params import Params, SearchParams
from tumor_classifier.pipeline import train

from conftest import write_params


@pytest.mark.score("M3")
def test_grid_search_picks_from_the_space(cancer: pd.DataFrame, project_params: Params) -> None:
    p = project_params
    fitted = train.fit(cancer, p.data, p.train)
    space = p.train.search.space
    assert fitted.cv.best_params["C"] in space["C"]
    assert len(fitted.cv.candidates) == len(space["C"]) * len(space["class_weight"])
    assert fitted.cv.score == max(c.mean for c in fitted.cv.candidates)
    assert type(fitted.baseline.named_steps["model"]).__name__ == "DummyClassifier"
    assert list(fitted.model.classes_) == ["benign", "malignant"]


def test_training_is_deterministic(customers: pd.DataFrame, customers_params: Params) -> None:
    first = train.fit(customers, customers_params.data, customers_params.train)
    second = train.fit(customers, customers_params.data, customers_params.train)
    numeric, categorical = feature_columns(list(customers.columns), customers_params.data)
    x = model_input(customers, numeric, categorical)
    np.testing.assert_array_equal(first.model.predict_proba(x), second.model.predict_proba(x))


@pytest.mark.score("I2")
def test_random_search_with_distributions_and_a_seeded_forest(
    customers: pd.DataFrame, customers_params: Params
) -> None:
    search = SearchParams(
        kind="random",
        n_iter=3,
        cv_folds=3,
        scoring="roc_auc_ovr",
        n_jobs=1,
        space={"n_estimators": {"int_uniform": [10, 30]}, "max_depth": [3, None]},
    )
    p = customers_params.train.model_copy(
        update={
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "fixed": {},
            "search": search,
        }
    )
    fitted = train.fit(customers, customers_params.data, p)
    assert len(fitted.cv.candidates) == 3
    assert 10 <= fitted.cv.best_params["n_estimators"] <= 30
    assert fitted.model.named_steps["model"].random_state == p.seed


@pytest.mark.score("D7")
def test_unseen_and_missing_categories_still_predict(
    customers: pd.DataFrame, customers_params: Params
) -> None:
    fitted = train.fit(customers, customers_params.data, customers_params.train)
    numeric, categorical = feature_columns(list(customers.columns), customers_params.data)
    row = model_input(customers.head(2), numeric, categorical)
    row.loc[:, "plan"] = ["enterprise", ""]
    assert fitted.model.predict_proba(row).shape == (2, 2)


def test_space_converts_distributions() -> None:
    search = SearchParams(
        kind="random",
        n_iter=2,
        cv_folds=2,
        scoring="accuracy",
        n_jobs=1,
        space={"C": {"log_uniform": [0.01, 10]}, "penalty": ["l2"]},
    )
    space = train.space(search)
    assert isinstance(space["model__C"], type(stats.loguniform(0.01, 10)))
    assert space["model__penalty"] == ["l2"]


@pytest.mark.score("I2")
@pytest.mark.parametrize(
    ("space", "kind", "message"),
    [
        ({"C": {"log_uniform": [0.1, 1]}}, "grid", "distributions need search.kind: random"),
        ({"C": {"normal": [0, 1]}}, "random", "use one of log_uniform, uniform, int_uniform"),
        ({"C": 3}, "grid", "give a list of values"),
    ],
)
def test_bad_space_is_one_line(space: dict[str, object], kind: str, message: str) -> None:
    search = SearchParams(
        kind=kind,  # type: ignore[arg-type]
        n_iter=2,
        cv_folds=2,
        scoring="accuracy",
        n_jobs=1,
        space=space,
    )
    with pytest.raises(UserError) as error:
        train.space(search)
    assert message in str(error.value)


def test_bad_estimator_is_one_line() -> None:
    with pytest.raises(UserError, match=r"cannot import estimator 'sklearn\.linear\.Nope'"):
        train.estimator("sklearn.linear.Nope", 0)
    with pytest.raises(UserError, match="unexpected keyword argument 'depth'"):
        train.estimator("sklearn.linear_model.LogisticRegression", 0, depth=3)


def test_unusable_tracking_store_fails_before_training(
    cancer: pd.DataFrame, project_params: Params, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_params(workdir, project_params)
    cancer.to_parquet("train.parquet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"MLflow tracking store http://127\.0\.0\.1:9 is unusable"):
        train.main(["train.parquet", "models", "train.json"])
    assert not Path("models").exists()


def test_bad_search_argument_is_one_line(cancer: pd.DataFrame, project_params: Params) -> None:
    search = project_params.train.search.model_copy(update={"space": {"C": [-1.0]}})
    p = project_params.train.model_copy(update={"search": search})
    with pytest.raises(UserError, match=r"training failed: .*C"):
        train.fit(cancer, project_params.data, p)


def test_a_numeric_target_trains_the_regression_block(
    diabetes: pd.DataFrame, diabetes_params: Params
) -> None:
    fitted = train.fit(diabetes, diabetes_params.data, diabetes_params.train)
    chosen = diabetes_params.train.regression
    assert chosen is not None
    assert type(fitted.model[-1]).__name__ == chosen.estimator.rpartition(".")[2]
    assert type(fitted.baseline[-1]).__name__ == "DummyRegressor"
    assert fitted.cv.scoring == chosen.scoring
    assert set(fitted.cv.best_params) == set(chosen.space)
    assert len(fitted.cv.candidates) == len(chosen.space["alpha"])
    assert fitted.model.predict(diabetes.drop(columns="progression").head(3)).dtype.kind == "f"


def test_a_regression_without_its_block_is_one_line(
    diabetes: pd.DataFrame, diabetes_params: Params
) -> None:
    classification_only = diabetes_params.train.model_copy(update={"regression": None})
    with pytest.raises(UserError, match=r"add train\.regression to params\.yaml"):
        train.fit(diabetes, diabetes_params.data, classification_only)
