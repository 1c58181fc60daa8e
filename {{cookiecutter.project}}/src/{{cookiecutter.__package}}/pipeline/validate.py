"""Validate stage: the raw table against the reviewed pandera schema; `make schema` infers it."""

import argparse
import json
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from .. import cli, roles
from ..data import feature_columns, read_table, task_of, write_table
from ..metrics import DataSummary
from ..params import DataParams, Params, ValidateParams, load

MAX_PROBLEMS = 5
# Rows the leak check looks at; the most groups it cuts a number into; the fewest rows a group
# (a tree's leaf, or a category's value) has before it says anything of the target.
LEAK_SAMPLE = 50_000
LEAK_GROUPS = 20
LEAK_MIN_GROUP = 5


def _round(value: float, toward: float) -> float:
    """Six significant digits for a readable schema, never narrower than the observed value."""
    rounded = float(f"{value:.6g}")
    return min(rounded, toward) if value <= toward else max(rounded, toward)


def infer(frame: pd.DataFrame, data: DataParams, margin: float) -> pa.DataFrameSchema:
    """A strict schema from the data: dtypes, nullability, widened ranges, categories, label set."""
    _, categorical = feature_columns(list(frame.columns), data)
    columns: dict[str, pa.Column] = {}
    for name in frame.columns:
        series = frame[name]
        nullable = bool(series.isna().any())
        if name in data.drop:
            columns[name] = pa.Column(nullable=True)
        elif name == data.target and task_of(series, data) == "regression":
            columns[name] = pa.Column(float, nullable=False)
        elif name == data.target:
            labels = sorted(series.dropna().astype(str).unique())
            columns[name] = pa.Column(str, pa.Check.isin(labels), nullable=False)
        elif name in categorical:
            values = sorted(series.dropna().astype(str).unique())
            columns[name] = pa.Column(str, pa.Check.isin(values), nullable=nullable)
        elif not pd.api.types.is_numeric_dtype(series):
            raise cli.UserError(
                f"column {name!r} is not numeric: list it under data.categorical or data.drop "
                "in params.yaml"
            )
        else:
            low, high = float(series.min()), float(series.max())
            pad = (high - low) * margin
            # A column that is never negative stays so: counts, sizes and rates keep their floor.
            floor = max(low - pad, 0.0) if low >= 0 else low - pad
            check = pa.Check.in_range(_round(floor, low), _round(high + pad, high))
            columns[name] = pa.Column(float, check, nullable=nullable)
    unique = None if frame.duplicated().any() else list(frame.columns)
    return pa.DataFrameSchema(columns, strict=True, coerce=True, unique=unique)


def describe(failures: pd.DataFrame) -> str:
    """One line from pandera's failure cases: each column and rule, with an example value."""
    problems = []
    for (column, check), cases in failures.groupby(["column", "check"], dropna=False, sort=False):
        value = cases["failure_case"].iloc[0]
        example = value.item() if hasattr(value, "item") else value  # numpy scalars print as Python
        if check == "column_in_schema":
            problems.append(f"unexpected column {example!r}")
        elif check == "column_in_dataframe":
            problems.append(f"missing column {example!r}")
        elif check == "multiple_fields_uniqueness":
            rows = cases["index"].nunique()
            problems.append(f"{rows} rows are duplicates")
        elif check == "not_nullable":
            problems.append(
                f"column {column!r} has {len(cases)} missing values but is not nullable"
            )
        else:
            problems.append(
                f"column {column!r} fails {check} in {len(cases)} rows (e.g. {example!r})"
            )
    shown = "; ".join(problems[:MAX_PROBLEMS])
    more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return f"{shown}{more}"


def check_roles(schema: pa.DataFrameSchema, data: DataParams) -> None:
    """The schema and params.yaml must agree on which columns are categorical."""
    for name, column in schema.columns.items():
        if name in data.drop or name == data.target:
            continue
        is_numeric = str(column.dtype).startswith(("float", "int"))
        if is_numeric == (name in data.categorical):
            role = "categorical" if name in data.categorical else "numeric"
            raise cli.UserError(
                f"schema and params.yaml disagree on column {name!r} (schema: {column.dtype}, "
                f"params: {role}): run `make schema` and review the diff"
            )


def leak_score(feature: pd.Series, target: pd.Series, regression: bool = False) -> float:
    """How well a feature alone predicts the target, 1.0 for an exact leak: of a class, the
    balanced accuracy of naming, in each of the feature's groups, the class most over-represented
    there; of a number, the share of its variance the groups' means explain (R²). A number's
    groups are the leaves of a small tree on it alone (cuts where the target changes, not where
    quantiles fall); a category's are its values, rare ones pooled (one row per value would
    'predict' anything)."""
    if pd.api.types.is_numeric_dtype(feature):
        # Only here: validate starts fast.
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        leaf = max(LEAK_MIN_GROUP, len(feature) // 100)
        tree = (
            DecisionTreeRegressor(max_leaf_nodes=LEAK_GROUPS, min_samples_leaf=leaf, random_state=0)
            if regression
            else DecisionTreeClassifier(
                max_leaf_nodes=LEAK_GROUPS,
                min_samples_leaf=leaf,
                class_weight="balanced",
                random_state=0,
            )
        )
        # A tree sees only a number's order: its ranks fit the tree's 32 bits at any scale.
        ranks = feature.rank(method="dense").to_frame()
        leaves = tree.fit(ranks, target).apply(ranks)
        groups = pd.Series(leaves, index=feature.index)
    else:
        groups = feature.astype(str)  # missing values are a group of their own ("nan")
        sizes = groups.map(groups.value_counts())
        groups = groups.where(sizes >= max(LEAK_MIN_GROUP, len(groups) // 100), "(rare)")
    if regression:
        spread = float(((target - target.mean()) ** 2).sum())
        within = float(((target - target.groupby(groups).transform("mean")) ** 2).sum())
        return 1 - within / spread if spread else 0.0
    counts = pd.crosstab(groups, target)
    predicted = (counts / counts.sum()).idxmax(axis=1)
    recalls = [counts.loc[predicted == c, c].sum() / counts[c].sum() for c in counts.columns]
    return float(sum(recalls) / len(recalls))


def check_learnable(frame: pd.DataFrame, data: DataParams, rules: ValidateParams) -> None:
    """Rows, two target values or more, and no feature that predicts the target (almost) on its
    own."""
    if frame.empty:
        raise cli.UserError("the table has no rows")
    target = frame[data.target]
    regression = task_of(target, data) == "regression"
    if target.nunique() < 2:
        what = "value" if regression else "class"
        raise cli.UserError(
            f"target {data.target!r} has the single {what} {target.iloc[0]!r}: "
            "a model needs two or more"
        )
    numeric, categorical = feature_columns(list(frame.columns), data)
    # A sample is enough to see a leak, and keeps this check flat as the table grows.
    sample = frame.sample(min(len(frame), LEAK_SAMPLE), random_state=0)
    measure = "R²" if regression else "balanced accuracy"
    for column in numeric + categorical:
        if column in rules.accept_leaks:
            continue
        score = leak_score(sample[column], sample[data.target], regression)
        if score >= rules.leak_score:
            raise cli.UserError(
                f"column {column!r} predicts the target almost alone ({measure} "
                f"{score:.3f} >= validate.leak_score): a label leak? list it under data.drop, "
                "or, if it is a genuine feature, under validate.accept_leaks in params.yaml"
            )


def check(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, data: DataParams, rules: ValidateParams
) -> pd.DataFrame:
    """The validated, coerced table; a violation is a UserError naming column and rule."""
    check_roles(schema, data)
    try:
        validated = schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        raise cli.UserError(f"data fails its schema: {describe(errors.failure_cases)}") from None
    check_learnable(validated, data, rules)
    return validated


def summary(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, data: DataParams, unlabelled: int = 0
) -> DataSummary:
    """What the PR report shows of the validated data (a regression has no classes to count)."""
    missing = frame.isna().sum()
    target = frame[data.target]
    counts = {} if task_of(target, data) == "regression" else target.value_counts()
    return DataSummary(
        rows=len(frame),
        columns=frame.shape[1],
        checks=sum(len(c.checks) + 2 for c in schema.columns.values()),
        missing={str(name): int(n) for name, n in missing.items() if n},
        classes={str(k): int(v) for k, v in counts.items()},
        unlabelled=unlabelled,
    )


def load_schema(path: Path) -> pa.DataFrameSchema:
    if not path.exists():
        raise cli.UserError(f"{path} not found: run `make schema`, review it and commit it")
    return pa.DataFrameSchema.from_yaml(path)


def make_schema(raw: Path, out: Path, params: Params, path: Path = Path("params.yaml")) -> None:
    """Decide each column's role from the table, then write the schema and params.yaml's data."""
    decisions = roles.decide_all(read_table(raw), params.data)
    data = params.data.model_copy(
        update={
            "categorical": [d.column for d in decisions if d.role == "categorical"],
            "drop": [d.column for d in decisions if d.role == "drop"],
        }
    )
    # Read again as the pipeline will: categorical columns as the text of the file.
    schema = infer(read_table(raw, data), data, params.validate_.range_margin)
    out.write_text(str(schema.to_yaml()))  # a string: no stream is given
    roles.write_data_params(path, data)
    print(roles.table(decisions))
    print(f"\nwrote {out} and data.categorical/drop in {path}: review them, then commit them")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="validate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    infer_cmd = commands.add_parser("infer", help="write a schema inferred from the data")
    infer_cmd.add_argument("raw", type=Path)
    infer_cmd.add_argument("schema", type=Path)
    check_cmd = commands.add_parser("check", help="validate the data against the schema")
    check_cmd.add_argument("raw", type=Path)
    check_cmd.add_argument("schema", type=Path)
    check_cmd.add_argument("validated", type=Path)
    check_cmd.add_argument("report", type=Path)
    args = parser.parse_args(argv)

    params = load()
    if args.command == "infer":
        make_schema(args.raw, args.schema, params)
        return
    frame = read_table(args.raw, params.data)
    schema = load_schema(args.schema)
    # A row without a target teaches nothing: dropped, and counted in the report.
    unlabelled = frame[params.data.target].isna() if params.data.target in frame else None
    if unlabelled is not None and unlabelled.any():
        frame = frame[~unlabelled].reset_index(drop=True)
        print(f"validate: dropped {int(unlabelled.sum())} rows without a {params.data.target}")
    validated = check(frame, schema, params.data, params.validate_)
    write_table(validated, args.validated)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    dropped = 0 if unlabelled is None else int(unlabelled.sum())
    report = summary(validated, schema, params.data, dropped).model_dump()
    args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    cli.run(main)
