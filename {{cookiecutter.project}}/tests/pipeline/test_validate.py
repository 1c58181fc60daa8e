"""Validate stage: the inferred schema accepts good data and names column and rule of bad data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.params import Params
from tumor_classifier.pipeline import validate

from conftest import ROOT, write_params


@pytest.fixture(scope="module")
def cancer_schema(cancer: pd.DataFrame, project_params: Params) -> pa.DataFrameSchema:
    return validate.infer(cancer, project_params.data, project_params.validate_.range_margin)


@pytest.mark.score("D1")
def test_shipped_schema_is_what_make_schema_infers(cancer_schema: pa.DataFrameSchema) -> None:
    assert (ROOT / "data/schema.yaml").read_text() == cancer_schema.to_yaml()


@pytest.mark.score("D1")
def test_inferred_schema_accepts_its_data_and_widens_ranges(
    cancer: pd.DataFrame, cancer_schema: pa.DataFrameSchema, project_params: Params
) -> None:
    validated = validate.check(cancer, cancer_schema, project_params.data, project_params.validate_)
    assert validated.shape == cancer.shape
    (check,) = cancer_schema.columns["mean_radius"].checks
    low, high = cancer["mean_radius"].min(), cancer["mean_radius"].max()
    assert check.statistics["min_value"] < low
    assert check.statistics["max_value"] > high
    # Never-negative columns keep their floor at zero.
    assert cancer_schema.columns["mean_concavity"].checks[0].statistics["min_value"] == 0


def test_categories_missing_values_and_ids(
    customers: pd.DataFrame, customers_params: Params
) -> None:
    schema = validate.infer(customers, customers_params.data, 0.1)
    assert schema.columns["region"].nullable
    assert not schema.columns["plan"].nullable
    assert schema.columns["plan"].checks[0].statistics["allowed_values"] == ["basic", "plus", "pro"]
    assert schema.columns["customer_id"].checks == []
    validate.check(customers, schema, customers_params.data, customers_params.validate_)


def broken(frame: pd.DataFrame, change: str) -> pd.DataFrame:
    frame = frame.copy()
    if change == "range":
        frame.loc[3, "mean_radius"] = -1.0
    elif change == "label":
        frame.loc[0, "diagnosis"] = "unknown"
    elif change == "missing_column":
        frame = frame.drop(columns="mean_area")
    elif change == "extra_column":
        frame["patient"] = 1
    elif change == "duplicates":
        frame = pd.concat([frame, frame.head(2)], ignore_index=True)
    elif change == "null":
        frame.loc[5, "mean_texture"] = np.nan
    elif change == "type":
        frame["mean_texture"] = frame["mean_texture"].astype(object)
        frame.loc[7, "mean_texture"] = "high"
    return frame


@pytest.mark.score("D1")
@pytest.mark.score("Mon2")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("range", "column 'mean_radius' fails in_range(4.8681, 30.2229) in 1 rows (e.g. -1.0)"),
        (
            "label",
            "column 'diagnosis' fails isin(['benign', 'malignant']) in 1 rows (e.g. 'unknown')",
        ),
        ("missing_column", "missing column 'mean_area'"),
        ("extra_column", "unexpected column 'patient'"),
        ("duplicates", "4 rows are duplicates"),
        ("null", "column 'mean_texture' has 1 missing values but is not nullable"),
        ("type", "column 'mean_texture' fails coerce_dtype('float64') in 1 rows (e.g. 'high')"),
    ],
)
def test_violations_name_column_and_rule(
    cancer: pd.DataFrame,
    cancer_schema: pa.DataFrameSchema,
    project_params: Params,
    change: str,
    message: str,
) -> None:
    with pytest.raises(UserError) as error:
        validate.check(
            broken(cancer, change), cancer_schema, project_params.data, project_params.validate_
        )
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unseen_category_fails(customers: pd.DataFrame, customers_params: Params) -> None:
    schema = validate.infer(customers, customers_params.data, 0.1)
    changed = customers.copy()
    changed.loc[0, "plan"] = "enterprise"
    with pytest.raises(UserError, match=r"column 'plan' fails isin\(\['basic', 'plus', 'pro'\]\)"):
        validate.check(changed, schema, customers_params.data, customers_params.validate_)


def test_text_column_must_be_declared(customers: pd.DataFrame, customers_params: Params) -> None:
    data = customers_params.data.model_copy(update={"categorical": ["plan"]})
    with pytest.raises(
        UserError, match=r"column 'region' is not numeric: list it under data\.categorical"
    ):
        validate.infer(customers, data, 0.1)


def test_schema_out_of_date_with_params(customers: pd.DataFrame, customers_params: Params) -> None:
    schema = validate.infer(customers, customers_params.data, 0.1)
    data = customers_params.data.model_copy(update={"categorical": ["plan", "region", "tenure"]})
    with pytest.raises(UserError, match=r"disagree on column 'tenure'.*run `make schema`"):
        validate.check(customers, schema, data, customers_params.validate_)


def test_no_rows(
    cancer: pd.DataFrame, cancer_schema: pa.DataFrameSchema, project_params: Params
) -> None:
    with pytest.raises(UserError, match="the table has no rows"):
        validate.check(cancer.head(0), cancer_schema, project_params.data, project_params.validate_)


def test_single_class(
    cancer: pd.DataFrame, cancer_schema: pa.DataFrameSchema, project_params: Params
) -> None:
    benign = cancer[cancer["diagnosis"] == "benign"]
    with pytest.raises(UserError, match="target 'diagnosis' has the single class 'benign'"):
        validate.check(benign, cancer_schema, project_params.data, project_params.validate_)


@pytest.mark.score("D4")
@pytest.mark.parametrize("dataset", ["cancer", "customers"])
def test_label_leak(dataset: str, request: pytest.FixtureRequest) -> None:
    frame: pd.DataFrame = request.getfixturevalue(dataset).copy()
    p: Params = request.getfixturevalue(
        "project_params" if dataset == "cancer" else "customers_params"
    )
    target = frame[p.data.target]
    column = "mean_radius" if dataset == "cancer" else "plan"
    frame[column] = (target == target.iloc[0]).map({True: 20.0, False: 10.0})
    if dataset == "customers":
        frame[column] = frame[column].astype(str)
    schema = validate.infer(frame, p.data, 0.1)
    with pytest.raises(UserError) as error:
        validate.check(frame, schema, p.data, p.validate_)
    assert str(error.value) == (
        f"column '{column}' predicts the target almost alone (balanced accuracy 1.000 >= "
        "validate.leak_score): a label leak? list it under data.drop, or, if it is a genuine "
        "feature, under validate.accept_leaks in params.yaml"
    )


def noisy_copy(target: pd.Series, share: float) -> pd.Series:
    """A number that is the target's class, wrong in `share` of the rows (spread evenly)."""
    rng = np.random.default_rng(3)
    code = (target == target.iloc[0]).astype(float)
    flipped = rng.permutation(len(target)) < share * len(target)
    return (code + flipped) % 2 + rng.normal(0, 0.01, len(target))


@pytest.mark.score("D4")
def test_near_leak_stops_and_can_be_accepted(cancer: pd.DataFrame, project_params: Params) -> None:
    p = project_params
    frame = cancer.assign(biopsy=noisy_copy(cancer["diagnosis"], 0.01))  # right in 99% of rows
    schema = validate.infer(frame, p.data, 0.1)
    with pytest.raises(UserError, match=r"column 'biopsy' predicts the target almost alone"):
        validate.check(frame, schema, p.data, p.validate_)
    accepted = p.validate_.model_copy(update={"accept_leaks": ["biopsy"]})
    assert len(validate.check(frame, schema, p.data, accepted)) == len(frame)
    # Right in 96% of rows: a strong feature below the threshold, not a leak.
    strong = cancer.assign(biopsy=noisy_copy(cancer["diagnosis"], 0.04))
    score = validate.leak_score(strong["biopsy"], strong["diagnosis"])
    assert 0.9 < score < p.validate_.leak_score
    validate.check(strong, validate.infer(strong, p.data, 0.1), p.data, p.validate_)


def test_many_rare_categories_are_no_leak(customers: pd.DataFrame) -> None:
    """One row per value would 'predict' any target: rare values pool before the check."""
    ids = customers["customer_id"].astype(str)
    assert validate.leak_score(ids, customers["churned"]) == 0.5
    assert validate.leak_score(customers["plan"], customers["plan"]) == 1.0


def test_summary_counts(customers: pd.DataFrame, customers_params: Params) -> None:
    schema = validate.infer(customers, customers_params.data, 0.1)
    summary = validate.summary(customers, schema, customers_params.data)
    assert summary.rows == 600
    assert summary.missing == {
        "region": int(customers["region"].isna().sum()),
        "tenure": int(customers["tenure"].isna().sum()),
    }


def test_command_line_failure_is_one_line(
    cancer: pd.DataFrame, cancer_schema: pa.DataFrameSchema, project_params: Params, workdir: Path
) -> None:
    write_params(workdir, project_params)
    broken(cancer, "range").to_csv("raw.csv", index=False)
    Path("schema.yaml").write_text(str(cancer_schema.to_yaml()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tumor_classifier.pipeline.validate",
            "check",
            "raw.csv",
            "schema.yaml",
            "out.parquet",
            "report.json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("validate: data fails its schema: column 'mean_radius'")
    assert not Path("out.parquet").exists()


def test_missing_schema_says_what_to_run(project_params: Params, workdir: Path) -> None:
    write_params(workdir, project_params)
    Path("raw.csv").write_text("diagnosis\nbenign\n")
    with pytest.raises(UserError, match=r"schema\.yaml not found: run `make schema`"):
        validate.main(["check", "raw.csv", "schema.yaml", "out.parquet", "report.json"])


def test_a_regression_target_is_a_number_and_rows_without_one_are_dropped_and_counted(
    diabetes: pd.DataFrame, diabetes_params: Params, workdir: Path
) -> None:
    write_params(workdir, diabetes_params)
    schema = validate.infer(diabetes, diabetes_params.data, 0.1)
    assert str(schema.columns["progression"].dtype) == "float64"  # not 214 labels
    raw = diabetes.copy()
    raw.loc[raw.index[:7], "progression"] = np.nan
    raw.to_csv("raw.csv", index=False)
    Path("schema.yaml").write_text(str(schema.to_yaml()))
    validate.main(["check", "raw.csv", "schema.yaml", "out.parquet", "report.json"])
    report = json.loads(Path("report.json").read_text())
    assert (report["rows"], report["unlabelled"], report["classes"]) == (442 - 7, 7, {})
    assert pd.read_parquet("out.parquet")["progression"].notna().all()
