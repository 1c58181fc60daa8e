"""Evaluate stage: metrics overall, per class and per slice, plots, and the model card; a
regression's RMSE, MAE and R² overall and per slice, with predicted-vs-actual and residual plots;
and the champion's scores on the same test set, the cost of its staleness."""

import hashlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dvc.api
import joblib
import mlflow
import numpy as np
import pandas as pd
from dvc.scm import RevError
from sklearn.base import is_regressor
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from .. import cli, figures, render, tracking
from ..data import feature_columns, model_input, read_table
from ..lineage import md5, revision
from ..metrics import (
    ClassScores,
    CrossValidation,
    Latency,
    Metrics,
    RegressionMetrics,
    RegressionScores,
    RegressionSliceScores,
    Scores,
    SliceScores,
    Staleness,
)
from ..params import AUTO, DataParams, Params, flatten, load


def positive_class(y_true: pd.Series, classes: list[str], data: DataParams) -> str:
    """The class the binary curves are drawn for: data.positive_class, else the rarest class in
    the test set (the one a classifier is usually there to find; of a tie, the last by name)."""
    if data.positive_class is None:
        counts = y_true.value_counts().reindex(classes, fill_value=0)
        return str(counts.iloc[::-1].idxmin())
    if data.positive_class not in classes:
        raise cli.UserError(
            f"data.positive_class {data.positive_class!r} is not a class: {classes}"
        )
    return data.positive_class


def slice_column(frame: pd.DataFrame, params: Params) -> str | None:
    """The column the test set is sliced by: evaluate.slice.column, else (auto) the categorical
    feature with the fewest values, the coarsest subgroups; none without categorical features."""
    column = params.evaluate.slice.column
    if column != AUTO:
        return column
    _, categorical = feature_columns(list(frame.columns), params.data)
    return min(categorical, key=lambda c: frame[c].nunique(dropna=False), default=None)


def scores(y_true: pd.Series, proba: np.ndarray, classes: list[str]) -> Scores:
    """Accuracy, macro precision/recall/F1, ROC AUC (one-vs-rest when multiclass) and log loss."""
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    if len(classes) == 2:
        auc = roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    return Scores(
        accuracy=float(accuracy_score(y_true, y_pred)),
        precision=float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        recall=float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        f1=float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        roc_auc=float(auc),
        log_loss=float(log_loss(y_true, proba, labels=classes)),
    )


def per_class(y_true: pd.Series, y_pred: np.ndarray, classes: list[str]) -> dict[str, ClassScores]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        c: ClassScores(precision=float(p), recall=float(r), f1=float(f), support=int(s))
        for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def slice_labels(column: pd.Series, bins: int) -> pd.Series:
    """Ordered slices: quantile bins of a numeric column, or the values of a categorical one."""
    if pd.api.types.is_numeric_dtype(column):
        binned = pd.qcut(column, q=bins, duplicates="drop")
        return binned.cat.rename_categories(
            [f"{column.name} {i.left:.4g}..{i.right:.4g}" for i in binned.cat.categories]
        )
    values = column.astype(object).where(column.notna(), "missing")
    return values.map(lambda v: f"{column.name}={v}").astype("category")


def slice_masks(
    frame: pd.DataFrame, column: str | None, bins: int, min_rows: int = 1
) -> Iterator[tuple[str, np.ndarray]]:
    """Each slice of the test set holding at least `min_rows` rows, and its rows' mask."""
    if column is None:
        return
    if column not in frame:
        raise cli.UserError(f"evaluate.slice.column {column!r} is not a column")
    labels = slice_labels(frame[column], bins)
    for label in labels.cat.categories:
        mask = (labels == label).to_numpy()
        if mask.sum() >= min_rows:
            yield str(label), mask


def slices(
    frame: pd.DataFrame, y_true: pd.Series, y_pred: np.ndarray, column: str | None, bins: int
) -> dict[str, SliceScores]:
    """Rows, accuracy and macro F1 of each slice of the test set."""
    return {
        label: SliceScores(
            rows=int(mask.sum()),
            accuracy=float(accuracy_score(y_true[mask], y_pred[mask])),
            f1=float(f1_score(y_true[mask], y_pred[mask], average="macro", zero_division=0)),
        )
        for label, mask in slice_masks(frame, column, bins)
    }


def curves(
    y_true: pd.Series, proba: np.ndarray, classes: list[str], positive: str, bins: int
) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall and calibration curves: of the positive class, or micro-averaged."""
    if len(classes) == 2:
        truth, score = (y_true == positive).to_numpy(), proba[:, classes.index(positive)]
    else:
        truth = (y_true.to_numpy()[:, None] == np.asarray(classes)[None, :]).ravel()
        score = proba.ravel()
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    observed, predicted = calibration_curve(truth, score, n_bins=bins)
    return {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
        "calibration": pd.DataFrame({"predicted": predicted, "observed": observed}),
    }


def importance(
    model: Pipeline,
    x: pd.DataFrame,
    y: pd.Series,
    repeats: int,
    seed: int,
    scoring: str = "f1_macro",
) -> pd.DataFrame:
    """Permutation importance of each input column on the test set (drop in macro F1, or in R²)."""
    result = permutation_importance(
        model, x, y, scoring=scoring, n_repeats=repeats, random_state=seed
    )
    table = pd.DataFrame(
        {"feature": x.columns, "importance": result.importances_mean, "std": result.importances_std}
    )
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def uninformative(table: pd.DataFrame, sigmas: float) -> list[str]:
    """The features no better than noise: shuffling them lowers the score by less than `sigmas`
    standard deviations of the drop over the repeats (or raises it)."""
    flagged = table["importance"] - sigmas * table["std"] <= 0
    return sorted(table.loc[flagged, "feature"])


def committed_model(revision: str, path: Path) -> bytes:
    """The model file as committed at a revision (or at origin/revision: a CI clone has no local
    branch), which DVC reads from its cache or else from the remote; LookupError says why not."""
    for name in (revision, f"origin/{revision}"):
        try:
            with dvc.api.open(path.as_posix(), rev=name, mode="rb") as file:
                return bytes(file.read())
        except RevError:
            continue
        # DVC and its git layer raise many kinds here (no git clone, no output at that revision,
        # an unreachable remote): each only means there is no champion to score.
        except Exception as error:
            raise LookupError(f"{path} at {name}: {str(error).splitlines()[0]}") from None
    raise LookupError(f"no revision {revision!r} in this clone")


def task_scores(model: Pipeline, test: pd.DataFrame, params: Params) -> dict[str, float]:
    """A model's scores on the test set: a classifier's over its own classes, or a regressor's."""
    numeric, categorical = feature_columns(list(test.columns), params.data)
    x = model_input(test, numeric, categorical)
    if hasattr(model, "feature_names_in_"):  # the columns it was trained on, in its order
        missing = sorted(set(model.feature_names_in_) - set(x.columns))
        if missing:
            raise ValueError(f"it reads columns this data lacks: {', '.join(missing)}")
        x = x[list(model.feature_names_in_)]
    if is_regressor(model):
        y_true = test[params.data.target].astype(float).to_numpy()
        return regression_scores(y_true, model.predict(x)).scores()
    y = test[params.data.target].astype(str)
    classes = [str(c) for c in model.classes_]
    if unseen := sorted(set(y) - set(classes)):
        raise ValueError(f"the test set has classes it never saw: {', '.join(unseen)}")
    return scores(y, model.predict_proba(x), classes).scores()


def staleness(
    champion: bytes, mine: dict[str, float], test: pd.DataFrame, params: Params
) -> Staleness:
    """The champion's scores on this test set beside the new model's (`mine`): the gap is what
    retraining gained (or lost) on today's data. A champion that cannot read this data (other
    columns, classes or task) is noted, not scored."""
    revision, digest = params.gate.champion, hashlib.md5(champion).hexdigest()
    try:
        # A model of another scikit-learn version or task can fail in many ways to load or score.
        theirs = task_scores(joblib.load(io.BytesIO(champion)), test, params)
    except Exception as error:
        note = f"the champion cannot score this test set: {str(error).splitlines()[0]}"
        return Staleness(champion=revision, champion_md5=digest, note=note)
    gap = {name: mine[name] - theirs[name] for name in mine if name in theirs}
    return Staleness(champion=revision, champion_md5=digest, champion_scores=theirs, gap=gap)


def stale_lines(stale: Staleness, metric: str) -> list[str]:
    """The model card's account of staleness: the champion on today's data against this model."""
    lines = ["## Staleness\n"]
    if stale.note:
        return [*lines, f"- champion `{stale.champion}` not scored: {stale.note}\n"]
    before = stale.champion_scores[metric]
    after = before + stale.gap[metric]
    return [
        *lines,
        f"- the current model (`{stale.champion}`) on today's test set: {metric} {before:.4f}; "
        f"retrained: {after:.4f} (gap {stale.gap[metric]:+.4f})\n",
    ]


def latency(
    model: Pipeline, baseline: Pipeline, x: pd.DataFrame, repeats: int, rows: int = 1000
) -> Latency:
    """Each pipeline's CPU time to predict the same rows (test rows, drawn with replacement), the
    two timed back to back, `repeats` times. CPU time and the median of the pairs' ratios, because
    on a busy machine (a CI runner, a laptop) wall times and best-of-N vary several-fold from run
    to run, which would fail the gate at random; these vary by about a tenth."""
    batch = x.sample(rows, replace=True, random_state=0)
    pairs = []
    for _ in range(repeats):
        pair = []
        for pipeline in (model, baseline):
            start = time.process_time()
            pipeline.predict(batch)
            pair.append((time.process_time() - start) * 1000)
        pairs.append(pair)
    times = np.array(pairs)
    model_ms, baseline_ms = np.median(times, axis=0)
    return Latency(
        rows=rows,
        model_ms=round(float(model_ms), 3),
        baseline_ms=round(float(baseline_ms), 3),
        relative=round(float(np.median(times[:, 0] / np.maximum(times[:, 1], 1e-6))), 3),
    )


def plot(tables: dict[str, pd.DataFrame], confusion: pd.DataFrame, out: Path) -> None:
    """PNG versions of the plots for the PR report and the model card."""
    for name, x, y, diagonal in (
        ("roc", "fpr", "tpr", True),
        ("precision_recall", "recall", "precision", False),
        ("calibration", "predicted", "observed", True),
    ):
        fig, ax = figures.figure(4.5, 4)
        ax.plot(tables[name][x], tables[name][y], marker="." if name == "calibration" else None)
        if diagonal:
            ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set(xlabel=x, ylabel=y, title=name.replace("_", " "), xlim=(0, 1), ylim=(0, 1.02))
        figures.save(fig, out / f"{name}.png")
    matrix = pd.crosstab(confusion["actual"], confusion["predicted"], dropna=False)
    fig, ax = figures.figure(4.5, 4)
    ax.imshow(matrix.to_numpy(), cmap="Blues")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=45)
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    for (i, j), n in np.ndenumerate(matrix.to_numpy()):
        ax.text(j, i, str(n), ha="center", va="center")
    ax.set(xlabel="predicted", ylabel="actual", title="confusion matrix")
    figures.save(fig, out / "confusion.png")
    plot_importance(tables["importance"], "macro F1", out)


def plot_importance(table: pd.DataFrame, score: str, out: Path) -> None:
    top = table.head(15).iloc[::-1]
    fig, ax = figures.figure(6, 0.3 * len(top) + 1.2)
    ax.barh(top["feature"], top["importance"], xerr=top["std"])
    ax.set(xlabel=f"drop in {score} when shuffled", title="permutation importance")
    figures.save(fig, out / "importance.png")


def auto(setting: str | None, why: str) -> str:
    """What the card says of a choice params.yaml left to the pipeline."""
    return f" (chosen: {why})" if setting in (None, AUTO) else ""


def model_card(
    metrics: Metrics, cv: CrossValidation, params: Params, data_md5: str, revision: str
) -> str:
    """A markdown model card: what the model is, what it was trained on, how well it does."""
    worst = min(metrics.slices.items(), key=lambda kv: kv[1].accuracy, default=None)
    baseline = metrics.baseline.scores()
    lines = [
        f"# Model card: {tracking.NAME}\n",
        "## Model\n",
        f"- estimator: `{params.train.estimator}` in a scikit-learn "
        "Pipeline (median imputation and scaling of numbers, one-hot encoding of categories)",
        f"- chosen by {params.train.search.kind} search, {params.train.search.cv_folds}-fold CV "
        f"on `{params.train.search.scoring}`: {cv.score:.4f} ± {cv.std:.4f}",
        f"- chosen arguments: `{cv.best_params}`; fixed: `{params.train.fixed}`",
        f"- git revision: `{revision}`",
        f"- raw data md5: `{data_md5}`\n",
        "## Data\n",
        f"- target `{params.data.target}`, classes: {', '.join(metrics.per_class)}; curves of "
        f"`{metrics.positive_class}`{auto(params.data.positive_class, 'the rarest class')}",
        f"- test rows: {sum(c.support for c in metrics.per_class.values())}, "
        f"split {params.split.test_size:.0%} with seed {params.split.seed}\n",
        "## Metrics on the test set\n",
        render.table(
            ["metric", "model", "baseline"],
            [(name, value, baseline[name]) for name, value in metrics.scores().items()],
        ),
        "## Per class\n",
        render.table(
            ["class", "precision", "recall", "f1", "support"],
            [(c, m.precision, m.recall, m.f1, m.support) for c, m in metrics.per_class.items()],
        ),
    ]
    if metrics.slices:
        lines += [
            f"## Slices of `{metrics.slice_column}`"
            f"{auto(params.evaluate.slice.column, 'the categorical feature with fewest values')}\n",
            render.table(
                ["slice", "rows", "accuracy", "f1"],
                [(k, s.rows, s.accuracy, s.f1) for k, s in metrics.slices.items()],
            ),
        ]
    lines += ["## Caveats\n"]
    if metrics.uninformative:
        lines.append(
            f"- {len(metrics.uninformative)} features no better than noise (shuffled, macro F1 "
            f"drops by less than {params.evaluate.uninformative_sigmas:g} standard deviations "
            f"over {params.evaluate.permutation_repeats} repeats): "
            + ", ".join(f"`{name}`" for name in metrics.uninformative)
        )
    if worst:
        name, values = worst
        lines.append(
            f"- weakest slice: {name} (accuracy {values.accuracy:.3f}, {values.rows} rows)"
        )
    lines += [
        "- evaluated on a held-out split of the same data: it does not show behaviour under drift; "
        "`make drift` and the service's drift gauges do",
        "\n![confusion](plots/confusion.png) ![roc](plots/roc.png)",
        "![importance](plots/importance.png)\n",
    ]
    return "\n".join(lines)


def evaluate(
    model: Pipeline, baseline: Pipeline, test: pd.DataFrame, params: Params
) -> tuple[Metrics, dict[str, pd.DataFrame], pd.DataFrame]:
    """Metrics, plot tables and the confusion rows of the model on the test set."""
    numeric, categorical = feature_columns(list(test.columns), params.data)
    x, y = model_input(test, numeric, categorical), test[params.data.target].astype(str)
    classes = [str(c) for c in model.classes_]
    proba = model.predict_proba(x)
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    positive, column = positive_class(y, classes, params.data), slice_column(test, params)
    tables = curves(y, proba, classes, positive, params.evaluate.calibration_bins)
    tables["importance"] = importance(
        model, x, y, params.evaluate.permutation_repeats, params.train.seed
    )
    metrics = Metrics(
        **scores(y, proba, classes).scores(),
        baseline=scores(y, baseline.predict_proba(x), classes),
        per_class=per_class(y, y_pred, classes),
        slices=slices(test, y, y_pred, column, params.evaluate.slice.bins),
        uninformative=uninformative(tables["importance"], params.evaluate.uninformative_sigmas),
        positive_class=positive,
        slice_column=column,
    )
    confusion = pd.DataFrame({"actual": y.to_numpy(), "predicted": y_pred})
    return metrics, tables, confusion


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> RegressionScores:
    """RMSE and MAE (in the target's units) and R²."""
    return RegressionScores(
        rmse=float(root_mean_squared_error(y_true, y_pred)),
        mae=float(mean_absolute_error(y_true, y_pred)),
        r2=float(r2_score(y_true, y_pred)),
    )


def regression_slices(
    frame: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray, column: str | None, bins: int
) -> dict[str, RegressionSliceScores]:
    """Rows, RMSE, MAE and R² of each slice of the test set (R² needs two rows)."""
    return {
        label: RegressionSliceScores(
            rows=int(mask.sum()), **regression_scores(y_true[mask], y_pred[mask]).model_dump()
        )
        for label, mask in slice_masks(frame, column, bins, min_rows=2)
    }


def evaluate_regression(
    model: Pipeline, baseline: Pipeline, test: pd.DataFrame, params: Params
) -> tuple[RegressionMetrics, dict[str, pd.DataFrame]]:
    """A regressor's metrics and plot tables on the test set."""
    numeric, categorical = feature_columns(list(test.columns), params.data)
    x = model_input(test, numeric, categorical)
    y = test[params.data.target].astype(float).to_numpy()
    y_pred = model.predict(x)
    column = slice_column(test, params)
    tables = {
        "predicted_actual": pd.DataFrame({"actual": y, "predicted": y_pred}),
        "residuals": pd.DataFrame({"predicted": y_pred, "residual": y - y_pred}),
        "importance": importance(
            model, x, pd.Series(y), params.evaluate.permutation_repeats, params.train.seed, "r2"
        ),
    }
    metrics = RegressionMetrics(
        task="regression",
        **regression_scores(y, y_pred).scores(),
        baseline=regression_scores(y, baseline.predict(x)),
        slices=regression_slices(test, y, y_pred, column, params.evaluate.slice.bins),
        uninformative=uninformative(tables["importance"], params.evaluate.uninformative_sigmas),
        slice_column=column,
    )
    return metrics, tables


def plot_regression(tables: dict[str, pd.DataFrame], out: Path) -> None:
    """Predicted against actual (the diagonal is perfect), residuals against predicted."""
    both = tables["predicted_actual"]
    low, high = float(both.min().min()), float(both.max().max())
    fig, ax = figures.figure(4.5, 4)
    ax.scatter(both["actual"], both["predicted"], s=8, alpha=0.6)
    ax.plot([low, high], [low, high], linestyle=":", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title="predicted vs actual")
    figures.save(fig, out / "predicted_actual.png")
    residuals = tables["residuals"]
    fig, ax = figures.figure(4.5, 4)
    ax.scatter(residuals["predicted"], residuals["residual"], s=8, alpha=0.6)
    ax.axhline(0, linestyle=":", color="grey")
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="residuals")
    figures.save(fig, out / "residuals.png")
    plot_importance(tables["importance"], "R²", out)


def regression_card(
    metrics: RegressionMetrics, cv: CrossValidation, params: Params, data_md5: str, revision: str
) -> str:
    """The model card of a regressor: the same sections, a regression's metrics."""
    train = params.train.for_task("regression")
    worst = max(metrics.slices.items(), key=lambda kv: kv[1].rmse, default=None)
    baseline = metrics.baseline.scores()
    lines = [
        f"# Model card: {tracking.NAME}\n",
        "## Model\n",
        f"- estimator: `{train.estimator}` (a regression) in a scikit-learn "
        "Pipeline (median imputation and scaling of numbers, one-hot encoding of categories)",
        f"- chosen by {train.search.kind} search, {train.search.cv_folds}-fold CV "
        f"on `{train.search.scoring}`: {cv.score:.4f} ± {cv.std:.4f}",
        f"- chosen arguments: `{cv.best_params}`; fixed: `{train.fixed}`",
        f"- git revision: `{revision}`",
        f"- raw data md5: `{data_md5}`\n",
        "## Data\n",
        f"- target `{params.data.target}`, a quantity",
        f"- split {params.split.test_size:.0%} with seed {params.split.seed}\n",
        "## Metrics on the test set\n",
        render.table(
            ["metric", "model", "baseline"],
            [(name, value, baseline[name]) for name, value in metrics.scores().items()],
        ),
    ]
    if metrics.slices:
        lines += [
            f"## Slices of `{metrics.slice_column}`"
            f"{auto(params.evaluate.slice.column, 'the categorical feature with fewest values')}\n",
            render.table(
                ["slice", "rows", "rmse", "mae", "r2"],
                [(k, s.rows, s.rmse, s.mae, s.r2) for k, s in metrics.slices.items()],
            ),
        ]
    lines += ["## Caveats\n"]
    if metrics.uninformative:
        lines.append(
            f"- {len(metrics.uninformative)} features no better than noise (shuffled, R² drops by "
            f"less than {params.evaluate.uninformative_sigmas:g} standard deviations over "
            f"{params.evaluate.permutation_repeats} repeats): "
            + ", ".join(f"`{name}`" for name in metrics.uninformative)
        )
    if worst:
        name, values = worst
        lines.append(f"- weakest slice: {name} (RMSE {values.rmse:.4g}, {values.rows} rows)")
    lines += [
        "- evaluated on a held-out split of the same data: it does not show behaviour under drift; "
        "`make drift` and the service's drift gauges do",
        "\n![predicted vs actual](plots/predicted_actual.png) ![residuals](plots/residuals.png)",
        "![importance](plots/importance.png)\n",
    ]
    return "\n".join(lines)


def log(metrics: Metrics | RegressionMetrics, model_path: Path, reports: Path) -> None:
    """Metrics, plots and the card into the MLflow run that trained this model."""
    model_md5 = md5(model_path)
    flat = flatten(metrics.model_dump())
    # MLflow metric names allow letters, digits and _-. :/ only.
    valid = {re.sub(r"[^\w\-. :/]", "_", k): v for k, v in flat.items()}
    numeric = {k: float(v) for k, v in valid.items() if isinstance(v, int | float)}
    run_id = tracking.find_run(model_md5)
    # Resume the training run; a model trained elsewhere (CI, another clone) gets a run of its own.
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else "evaluate"):
        mlflow.set_tags({"model_md5": model_md5, "evaluated": "true"})
        mlflow.log_metrics(numeric)
        mlflow.log_artifacts(str(reports / "plots"), "plots")
        mlflow.log_artifact(str(reports / "model_card.md"))


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "models", "test", "raw", "reports")
    params = load()
    tracking.start()
    model = joblib.load(args.models / "model.joblib")
    baseline = joblib.load(args.models / "baseline.joblib")
    plots = args.reports / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    cv = CrossValidation.read(args.reports / "train.json")
    test = read_table(args.test)
    metrics: Metrics | RegressionMetrics
    if is_regressor(model):
        metrics, tables = evaluate_regression(model, baseline, test, params)
        plot_regression(tables, plots)
        card = regression_card(metrics, cv, params, md5(args.raw), revision())
    else:
        metrics, tables, confusion = evaluate(model, baseline, test, params)
        confusion.to_csv(plots / "confusion.csv", index=False)
        plot(tables, confusion, plots)
        card = model_card(metrics, cv, params, md5(args.raw), revision())
    for name, table in tables.items():
        table.to_csv(plots / f"{name}.csv", index=False, float_format="%.6g")
    numeric, categorical = feature_columns(list(test.columns), params.data)
    timed = latency(
        model, baseline, model_input(test, numeric, categorical), params.evaluate.latency_repeats
    )
    (args.reports / "latency.json").write_text(timed.model_dump_json(indent=2) + "\n")
    (args.reports / "metrics.json").write_text(json.dumps(metrics.model_dump(), indent=2) + "\n")
    try:
        champion = committed_model(params.gate.champion, args.models / "model.joblib")
        stale = staleness(champion, metrics.scores(), test, params)
    except LookupError as error:
        stale = Staleness(champion=params.gate.champion, note=f"no champion model: {error}")
    gate = params.gate.for_task("regression" if is_regressor(model) else "classification")
    card += "\n" + "\n".join(stale_lines(stale, gate.metric))
    (args.reports / "staleness.json").write_text(stale.model_dump_json(indent=2) + "\n")
    (args.reports / "model_card.md").write_text(card)
    log(metrics, args.models / "model.joblib", args.reports)


if __name__ == "__main__":
    cli.run(main)
