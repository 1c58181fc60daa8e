"""Evaluate stage: metrics overall, per class and per slice; curves; the model card; MLflow."""

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.metrics import CrossValidation, Latency, Staleness
from tumor_classifier.params import Params
from tumor_classifier.pipeline import evaluate, split, train

from conftest import write_params


class Trained(NamedTuple):
    fitted: train.Fitted
    test: pd.DataFrame
    params: Params


@pytest.fixture(scope="module")
def diabetes_trained(diabetes: pd.DataFrame, diabetes_params: Params) -> Trained:
    p = diabetes_params
    train_rows, test_rows = split.split(diabetes, p.data.target, p.split, "regression")
    return Trained(train.fit(train_rows, p.data, p.train), test_rows, p)


@pytest.fixture
def wine_trained(wine: pd.DataFrame, wine_params: Params) -> Trained:
    train_rows, test_rows = split.split(wine, wine_params.data.target, wine_params.split)
    return Trained(
        train.fit(train_rows, wine_params.data, wine_params.train), test_rows, wine_params
    )


def test_binary_scores_match_hand_computed_values() -> None:
    y = pd.Series(["no", "yes", "yes", "no"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    scores = evaluate.scores(y, proba, ["no", "yes"])
    assert scores.accuracy == 0.5
    assert scores.roc_auc == 0.75
    assert scores.log_loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.3])))


@pytest.mark.score("M6")
def test_multiclass_metrics_per_class_and_slices(wine_trained: Trained) -> None:
    fitted, test_rows, p = wine_trained
    metrics, tables, confusion = evaluate.evaluate(fitted.model, fitted.baseline, test_rows, p)
    assert set(metrics.per_class) == {"a", "b", "c"}
    assert metrics.roc_auc > metrics.baseline.roc_auc == 0.5
    assert next(iter(metrics.slices)).startswith("alcohol ")
    assert sum(s.rows for s in metrics.slices.values()) == len(test_rows)
    assert set(tables) == {"roc", "precision_recall", "calibration", "importance"}
    assert len(confusion) == len(test_rows)
    # Every input column's contribution is measured: a feature that does not help shows.
    assert set(tables["importance"]["feature"]) == set(wine_trained.fitted.model.feature_names_in_)
    assert tables["importance"]["importance"].is_monotonic_decreasing


@pytest.mark.score("D2")
def test_a_noise_column_is_flagged_and_the_signal_is_not(
    cancer: pd.DataFrame, project_params: Params
) -> None:
    """The example data with a column of random numbers: shuffling it changes nothing, so the
    metrics and the model card name it; the features the model leans on are not named."""
    p = project_params
    noisy = cancer.assign(noise=np.random.default_rng(0).normal(size=len(cancer)))
    train_rows, test_rows = split.split(noisy, p.data.target, p.split)
    fitted = train.fit(train_rows, p.data, p.train)
    metrics, tables, _ = evaluate.evaluate(fitted.model, fitted.baseline, test_rows, p)
    assert "noise" in metrics.uninformative
    table = tables["importance"].set_index("feature")
    assert abs(table.loc["noise", "importance"]) <= 2 * table.loc["noise", "std"] + 0.01
    # A real signal: shuffling it costs macro F1 well beyond the spread of the repeats.
    assert "worst_texture" not in metrics.uninformative
    assert table.loc["worst_texture", "importance"] > 2 * table.loc["worst_texture", "std"]
    card = evaluate.model_card(metrics, fitted.cv, p, "0" * 32, "abc")
    (line,) = [line for line in card.splitlines() if "no better than noise" in line]
    assert "`noise`" in line
    assert "`worst_texture`" not in line


def test_uninformative_features_are_those_within_the_spread_of_zero() -> None:
    table = pd.DataFrame(
        {
            "feature": ["signal", "weak", "noise", "harmful"],
            "importance": [0.2, 0.03, 0.001, -0.01],
            "std": [0.01, 0.02, 0.004, 0.002],
        }
    )
    assert evaluate.uninformative(table, 2) == ["harmful", "noise", "weak"]
    assert evaluate.uninformative(table, 1) == ["harmful", "noise"]
    assert evaluate.uninformative(table, 0) == ["harmful"]


def test_numeric_slices_are_ordered_bins() -> None:
    labels = evaluate.slice_labels(pd.Series([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], name="size"), 3)
    assert list(labels.cat.categories) == [
        "size 0.999..2.667",
        "size 2.667..13.33",
        "size 13.33..30",
    ]


def test_categorical_slices_name_missing() -> None:
    labels = evaluate.slice_labels(pd.Series(["a", None, "b"], name="plan"), 3)
    assert sorted(labels.cat.categories) == ["plan=a", "plan=b", "plan=missing"]


def test_main_writes_metrics_plots_card_and_logs_to_mlflow(
    wine_trained: Trained, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted, test_rows, p = wine_trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    write_params(workdir, p)
    Path("models").mkdir()
    joblib.dump(fitted.model, "models/model.joblib")
    joblib.dump(fitted.baseline, "models/baseline.joblib")
    test_rows.to_parquet("test.parquet")
    Path("raw.csv").write_text("any bytes\n")
    Path("reports").mkdir()
    Path("reports/train.json").write_text(fitted.cv.model_dump_json())

    evaluate.main(["models", "test.parquet", "raw.csv", "reports"])

    card = Path("reports/model_card.md").read_text()
    assert "raw data md5: `" in card
    assert "| roc_auc |" in card
    assert "weakest slice" in card
    plots = {f.name for f in Path("reports/plots").iterdir()}
    assert {"roc.csv", "roc.png", "confusion.csv", "confusion.png", "importance.png"} <= plots
    metrics = json.loads(Path("reports/metrics.json").read_text())
    latency = Latency.read(Path("reports/latency.json"))
    assert latency.rows == 1000
    # Medians of CPU times, and the median of the pairs' ratios (not the ratio of the medians).
    assert min(latency.model_ms, latency.baseline_ms, latency.relative) > 0
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.metrics["accuracy"] == metrics["accuracy"]
    assert run.data.tags["evaluated"] == "true"
    # Outside a git clone there is no champion to score: said in the record and the card.
    stale = Staleness.read(Path("reports/staleness.json"))
    assert stale.note is not None
    assert stale.note.startswith("no champion model: models/model.joblib at main: ")
    assert "- champion `main` not scored: no champion model" in card


def fitted_bytes(table: pd.DataFrame, p: Params) -> tuple[bytes, pd.DataFrame]:
    """A model of the table's training split, as the file DVC stores, and its test split; of
    one candidate: these tests are of staleness, not of the tuning."""
    train_rows, test_rows = split.split(table, p.data.target, p.split)
    search = p.train.search.model_copy(update={"space": {"C": [1.0]}})
    file = io.BytesIO()
    joblib.dump(
        train.fit(train_rows, p.data, p.train.model_copy(update={"search": search})).model, file
    )
    return file.getvalue(), test_rows


@pytest.mark.score("M4")
def test_a_champion_of_shifted_data_scores_far_below_the_retrained_model(
    wine: pd.DataFrame, wine_params: Params
) -> None:
    """The champion learnt on an older world where every feature read two standard deviations
    higher; on today's rows it is far worse than a model retrained on them. A champion of today's
    world (another sample of it) is as good: the gap measures staleness, not chance."""
    p, features = wine_params, wine.columns.drop("cultivar")
    mine, today = fitted_bytes(wine, p)
    my_scores = evaluate.task_scores(joblib.load(io.BytesIO(mine)), today, p)
    old = wine.copy()
    old[features] += 2 * wine[features].std()
    stale = evaluate.staleness(fitted_bytes(old, p)[0], my_scores, today, p)
    assert stale.note is None
    assert stale.gap["accuracy"] > 0.3
    assert stale.gap["accuracy"] == pytest.approx(
        my_scores["accuracy"] - stale.champion_scores["accuracy"]
    )
    resampled = p.model_copy(update={"split": p.split.model_copy(update={"seed": 7})})
    fresh = evaluate.staleness(fitted_bytes(wine, resampled)[0], my_scores, today, p)
    assert abs(fresh.gap["accuracy"]) < 0.1
    assert abs(fresh.gap["roc_auc"]) < 0.05


def test_a_champion_that_cannot_read_the_data_is_noted_not_scored(
    wine: pd.DataFrame, wine_params: Params
) -> None:
    champion, today = fitted_bytes(wine, wine_params)
    renamed = today.rename(columns={"alcohol": "ethanol"})
    stale = evaluate.staleness(champion, {"accuracy": 1.0}, renamed, wine_params)
    assert (
        stale.note
        == "the champion cannot score this test set: it reads columns this data lacks: alcohol"
    )
    assert (stale.champion_scores, stale.gap) == ({}, {})
    assert evaluate.stale_lines(stale, "roc_auc")[1].startswith("- champion `main` not scored:")


@pytest.mark.score("M4")
def test_the_champion_is_the_model_dvc_recorded_on_its_revision(
    wine: pd.DataFrame, wine_params: Params, workdir: Path
) -> None:
    """The model committed (through DVC) on gate.champion is the one read back, byte for byte,
    while the workspace holds another; a revision without it says so."""
    champion, _ = fitted_bytes(wine, wine_params)

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    run("git", "init", "--quiet", "--initial-branch=main")
    run(sys.executable, "-m", "dvc", "init", "--quiet")
    Path("models").mkdir()
    Path("models/model.joblib").write_bytes(champion)
    run(sys.executable, "-m", "dvc", "add", "--quiet", "models/model.joblib")
    run("git", "add", "--all")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "champion")
    Path("models/model.joblib").write_bytes(b"a retrained model")
    assert evaluate.committed_model("main", Path("models/model.joblib")) == champion
    with pytest.raises(LookupError, match="no revision 'production' in this clone"):
        evaluate.committed_model("production", Path("models/model.joblib"))
    with pytest.raises(LookupError, match=r"^models/baseline\.joblib at main: "):
        evaluate.committed_model("main", Path("models/baseline.joblib"))


def test_positive_class_is_the_rarest_unless_named(project_params: Params) -> None:
    y = pd.Series(["b", "a", "c", "a", "c", "b", "c"])
    assert evaluate.positive_class(y, ["a", "b", "c"], project_params.data) == "b"  # a tie: last
    named = project_params.data.model_copy(update={"positive_class": "c"})
    assert evaluate.positive_class(y, ["a", "b", "c"], named) == "c"
    wrong = project_params.data.model_copy(update={"positive_class": "d"})
    with pytest.raises(UserError, match=r"data\.positive_class 'd' is not a class"):
        evaluate.positive_class(y, ["a", "b", "c"], wrong)


def test_auto_slice_is_the_categorical_feature_with_fewest_values(
    customers: pd.DataFrame, customers_params: Params, project_params: Params
) -> None:
    auto = customers_params.evaluate.slice.model_copy(update={"column": "auto"})
    p = customers_params.model_copy(
        update={"evaluate": customers_params.evaluate.model_copy(update={"slice": auto})}
    )
    assert evaluate.slice_column(customers, p) == "plan"  # 3 values; region has 4 and missing
    fewer = customers.assign(region=customers["region"].where(customers["region"] == "north"))
    assert evaluate.slice_column(fewer, p) == "region"  # north and missing: 2
    # No categorical feature: no slices; a named column is taken as named.
    assert project_params.evaluate.slice.column == "auto"
    frame = pd.DataFrame({"x": [1.0], "diagnosis": ["a"]})
    assert evaluate.slice_column(frame, project_params) is None
    assert evaluate.slice_column(customers, customers_params) == "plan"


def test_the_card_and_metrics_say_what_was_chosen(wine_trained: Trained) -> None:
    fitted, test_rows, p = wine_trained
    metrics, _, _ = evaluate.evaluate(fitted.model, fitted.baseline, test_rows, p)
    counts = test_rows["cultivar"].value_counts()
    assert metrics.positive_class == counts.index[counts.argmin()]
    assert metrics.slice_column == "alcohol"
    cv = CrossValidation(score=0.9, std=0.01, scoring="roc_auc_ovr", best_params={}, candidates=[])
    card = evaluate.model_card(metrics, cv, p, "0" * 32, "abc")
    assert f"curves of `{metrics.positive_class}` (chosen: the rarest class)" in card
    assert "## Slices of `alcohol`\n" in card  # named in params: no "chosen"


def test_regression_scores_match_hand_computed_values() -> None:
    y, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 3.0, 2.0])
    scores = evaluate.regression_scores(y, predicted)
    assert scores.rmse == pytest.approx(np.sqrt((0 + 1 + 0 + 4) / 4))
    assert scores.mae == pytest.approx(0.75)
    assert scores.r2 == pytest.approx(1 - 5 / 5)  # residuals' sum of squares equals the variance's


def test_a_regression_is_scored_overall_per_slice_and_against_its_baseline(
    diabetes_trained: Trained,
) -> None:
    fitted, test_rows, p = diabetes_trained
    metrics, tables = evaluate.evaluate_regression(fitted.model, fitted.baseline, test_rows, p)
    assert metrics.task == "regression"
    assert metrics.rmse < metrics.baseline.rmse
    assert metrics.r2 > metrics.baseline.r2 + 0.2
    assert abs(metrics.baseline.r2) < 0.05  # the mean of the training rows
    assert [k.split(" ")[0] for k in metrics.slices] == ["bmi"] * 3
    assert sum(s.rows for s in metrics.slices.values()) == len(test_rows)
    assert set(tables) == {"predicted_actual", "residuals", "importance"}
    both = tables["predicted_actual"]
    residual = tables["residuals"]["residual"]
    np.testing.assert_allclose(residual, both["actual"] - both["predicted"])
    # bmi and s5 carry most of the signal in this dataset.
    assert set(tables["importance"]["feature"].head(3)) & {"bmi", "s5"}


def test_a_regression_card_and_plots(diabetes_trained: Trained, tmp_path: Path) -> None:
    fitted, test_rows, p = diabetes_trained
    metrics, tables = evaluate.evaluate_regression(fitted.model, fitted.baseline, test_rows, p)
    evaluate.plot_regression(tables, tmp_path)
    assert {f.name for f in tmp_path.iterdir()} == {
        "predicted_actual.png",
        "residuals.png",
        "importance.png",
    }
    card = evaluate.regression_card(metrics, fitted.cv, p, "md5", "rev")
    assert "a quantity" in card
    assert "| rmse |" in card
    assert "| slice | rows | rmse | mae | r2 |" in card
    assert "Per class" not in card
    assert "roc" not in card
