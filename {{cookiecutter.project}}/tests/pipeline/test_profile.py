"""Profile stage: the EDA report says what the data holds and draws it."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tumor_classifier.params import DataParams, Params
from tumor_classifier.pipeline import profile

from conftest import write_params


def test_markdown_reports_balance_missing_and_correlations(
    cancer: pd.DataFrame, project_params: Params
) -> None:
    text = profile.markdown(cancer, project_params.data, project_params.profile)
    assert "569 rows, 30 numeric and 0 categorical features" in text
    assert "| benign | 357 | 0.6274 |" in text
    assert "No missing values." in text
    assert "| mean_radius | mean_perimeter | 0.9979 |" in text


def test_markdown_covers_categories_and_missing_values(
    customers: pd.DataFrame, customers_params: Params
) -> None:
    text = profile.markdown(customers, customers_params.data, customers_params.profile)
    assert "2 numeric and 2 categorical features" in text
    assert "## Categorical features" in text
    assert f"| tenure | {customers['tenure'].isna().sum()} |" in text
    assert "customer_id" not in text


def test_top_correlations_are_the_strongest_pairs(cancer: pd.DataFrame) -> None:
    pairs = profile.top_correlations(cancer, ["mean_radius", "mean_area", "mean_texture"], 2)
    assert [(a, b) for a, b, _ in pairs] == [
        ("mean_radius", "mean_area"),
        ("mean_radius", "mean_texture"),
    ]


@pytest.mark.parametrize(
    ("dataset", "p"),
    [
        ("cancer", "project_params"),
        ("customers", "customers_params"),
        ("diabetes", "diabetes_params"),  # a regression: target.png is its target's histogram
    ],
)
def test_main_writes_report_and_plots(
    dataset: str, p: str, request: pytest.FixtureRequest, workdir: Path
) -> None:
    write_params(workdir, request.getfixturevalue(p))
    request.getfixturevalue(dataset).to_csv("raw.csv", index=False)
    profile.main(["raw.csv", "out"])
    written = {f.name for f in (workdir / "out").iterdir()}
    assert written == {"profile.md", "target.png", "distributions.png", "correlations.png"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("mean_radius,diagnosis\n", "the table has a header but no rows"),
        ("mean_radius,diagnosis\n1.5,benign\nlarge,malignant\n", "column 'mean_radius' is numeric"),
        ("mean_radius;diagnosis\n1.5;benign\n", "not comma-separated"),
    ],
)
def test_bad_tables_stop_the_first_stage_in_one_line(
    project_params: Params, workdir: Path, table: str, message: str
) -> None:
    write_params(
        workdir, project_params.model_copy(update={"data": DataParams(target="diagnosis")})
    )
    Path("raw.csv").write_text(table)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.pipeline.profile",
            "raw.csv",
            "out",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("profile: ")
    assert message in result.stderr
