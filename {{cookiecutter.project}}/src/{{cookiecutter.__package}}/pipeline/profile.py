"""Profile stage (EDA): statistics, missing values, the target, correlations, distributions."""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli, figures, render
from ..data import check_usable, feature_columns, read_table, task_of
from ..params import DataParams, ProfileParams, load


def top_correlations(
    frame: pd.DataFrame, numeric: list[str], k: int
) -> list[tuple[str, str, float]]:
    """The k numeric feature pairs with the largest absolute Pearson correlation."""
    corr = frame[numeric].corr()
    pairs = [
        (a, b, float(corr.loc[a, b]))
        for i, a in enumerate(numeric)
        for b in numeric[i + 1 :]
        if not math.isnan(corr.loc[a, b])
    ]
    return sorted(pairs, key=lambda pair: -abs(pair[2]))[:k]


def markdown(frame: pd.DataFrame, data: DataParams, params: ProfileParams) -> str:
    numeric, categorical = feature_columns(list(frame.columns), data)
    classes = frame[data.target].value_counts(dropna=False)
    missing = frame.isna().sum()
    parts = [
        "# Data profile\n",
        f"{len(frame)} rows, {len(numeric)} numeric and {len(categorical)} categorical features, "
        f"target `{data.target}`, {int(frame.duplicated().sum())} duplicate rows.\n",
    ]
    if task_of(frame[data.target], data) == "regression":
        target = pd.to_numeric(frame[data.target]).describe()
        stats = [target[k] for k in ("mean", "std", "min", "50%", "max")]
        parts += [
            "## Target (a regression)\n",
            render.table(
                ["rows", "mean", "std", "min", "median", "max"], [[int(target["count"]), *stats]]
            ),
            "![target distribution](target.png)\n",
        ]
    else:
        parts += [
            "## Class balance\n",
            render.table(
                ["class", "rows", "share"],
                [(str(k), int(v), v / len(frame)) for k, v in classes.items()],
            ),
            "![class balance](target.png)\n",
        ]
    parts += [
        "## Missing values\n",
        render.table(
            ["column", "missing", "share"],
            [(c, int(n), n / len(frame)) for c, n in missing.items() if n],
        )
        if missing.any()
        else "No missing values.\n",
    ]
    if numeric:
        stats = frame[numeric].describe().T
        parts += [
            "## Numeric features\n",
            render.table(
                ["feature", "mean", "std", "min", "median", "max"],
                [
                    (c, s["mean"], s["std"], s["min"], s["50%"], s["max"])
                    for c, s in stats.iterrows()
                ],
            ),
            "![distributions](distributions.png)\n",
        ]
    if categorical:
        parts += [
            "## Categorical features\n",
            render.table(
                ["feature", "values", "most frequent", "its share"],
                [
                    (
                        c,
                        frame[c].nunique(),
                        frame[c].mode().iloc[0],
                        frame[c].value_counts(normalize=True).iloc[0],
                    )
                    for c in categorical
                ],
            ),
        ]
    if len(numeric) > 1:
        parts += [
            "## Strongest correlations\n",
            render.table(
                ["feature", "feature", "pearson r"],
                top_correlations(frame, numeric, params.top_correlations),
            ),
            "![correlations](correlations.png)\n",
        ]
    return "\n".join(parts)


def plot(frame: pd.DataFrame, data: DataParams, params: ProfileParams, out: Path) -> None:
    numeric, _ = feature_columns(list(frame.columns), data)
    fig, ax = figures.figure()
    # A regression's target is a distribution, drawn where a classification's balance is.
    regression = task_of(frame[data.target], data) == "regression"
    if regression:
        target = pd.to_numeric(frame[data.target])
        ax.hist(target.dropna(), bins=params.bins)
        ax.set(title=f"{data.target} (target)")
    else:
        frame[data.target].value_counts(dropna=False).plot.bar(ax=ax, title="class balance")
    figures.save(fig, out / "target.png")
    if numeric:
        cols = min(5, len(numeric))
        rows = math.ceil(len(numeric) / cols)
        fig, axes = figures.figure(3 * cols, 2.2 * rows)
        fig.delaxes(axes)
        for i, column in enumerate(numeric):
            ax = fig.add_subplot(rows, cols, i + 1)
            groups = [("all", frame[column])] if regression else frame.groupby(data.target)[column]
            for label, group in groups:
                ax.hist(group.dropna(), bins=params.bins, alpha=0.5, label=str(label))
            ax.set_title(column, fontsize=8)
            ax.tick_params(labelsize=6)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside upper right")
        figures.save(fig, out / "distributions.png")
    if len(numeric) > 1:
        fig, ax = figures.figure(8, 7)
        corr = frame[numeric].corr().to_numpy()
        image = ax.imshow(np.nan_to_num(corr), cmap="coolwarm", vmin=-1, vmax=1)
        ax.set_xticks(range(len(numeric)), numeric, rotation=90, fontsize=6)
        ax.set_yticks(range(len(numeric)), numeric, fontsize=6)
        fig.colorbar(image)
        figures.save(fig, out / "correlations.png")


def main(argv: list[str]) -> None:
    args = cli.paths(argv, __doc__, "raw", "out")
    params = load()
    frame = read_table(args.raw, params.data)
    check_usable(frame, params.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.md").write_text(markdown(frame, params.data, params.profile))
    plot(frame, params.data, params.profile, args.out)


if __name__ == "__main__":
    cli.run(main)
