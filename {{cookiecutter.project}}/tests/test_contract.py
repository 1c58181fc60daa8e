"""The input contract: derived from the schema, strict about types, nulls, categories and ranges."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from tumor_classifier import contract
from tumor_classifier.cli import UserError
from tumor_classifier.contract import Feature
from tumor_classifier.params import Params
from tumor_classifier.pipeline import validate


@pytest.fixture(scope="module")
def features(customers: pd.DataFrame, customers_params: Params) -> list[Feature]:
    schema = validate.infer(customers, customers_params.data, 0.1)
    return contract.from_schema(str(schema.to_yaml()), customers_params.data)


@pytest.mark.score("D4")
def test_features_follow_the_schema_without_target_or_identifiers(
    features: list[Feature], customers: pd.DataFrame
) -> None:
    assert [(f.name, f.numeric, f.nullable, f.categories) for f in features] == [
        ("tenure", True, True, ()),
        ("spend", True, False, ()),
        ("plan", False, False, ("basic", "plus", "pro")),
        ("region", False, True, ("east", "north", "south", "west")),
    ]
    assert contract.load_text(contract.dump(features)) == features


def test_numbers_carry_the_reviewed_range_widened_by_the_margin(
    features: list[Feature], customers: pd.DataFrame
) -> None:
    spend = next(f for f in features if f.name == "spend")
    low, high = customers["spend"].min(), customers["spend"].max()
    pad = (high - low) * 0.1
    assert spend.low == pytest.approx(low - pad, rel=1e-5)
    assert spend.high == pytest.approx(high + pad, rel=1e-5)
    tenure = next(f for f in features if f.name == "tenure")
    assert tenure.low == 0  # never negative in the data: the range keeps the floor
    assert all(f.low is None and f.high is None for f in features if not f.numeric)


GOOD: dict[str, Any] = {"plan": "pro", "region": None, "tenure": 3, "spend": 50.5}


@pytest.mark.score("Mon2")
@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"plan": "gold"}, "literal_error"),
        ({"spend": None}, "float_type"),
        ({"spend": "50"}, "float_type"),
        ({"spend": float("inf")}, "finite_number"),
        ({"spend": 1e39}, "less_than_equal"),  # infinite in ONNX Runtime's 32-bit floats
        ({"spend": -1e39}, "greater_than_equal"),
        ({"extra": 1}, "extra_forbidden"),
    ],
)
def test_record_model_refuses(features: list[Feature], change: dict[str, Any], error: str) -> None:
    record = contract.record_model(features, accept_unseen=False)
    record.model_validate(GOOD)
    with pytest.raises(ValidationError) as raised:
        record.model_validate({**GOOD, **change})
    assert raised.value.errors()[0]["type"] == error


def test_unseen_categories_pass_when_accepted(features: list[Feature]) -> None:
    record = contract.record_model(features, accept_unseen=True)
    assert record.model_validate({**GOOD, "plan": "gold"}).plan == "gold"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("value", "side"), [(-500.0, "below"), (1e6, "above")])
def test_out_of_range_is_refused_naming_the_side_and_the_range(
    features: list[Feature], value: float, side: str
) -> None:
    spend = next(f for f in features if f.name == "spend")
    refusing = contract.record_model(features, accept_unseen=False, refuse_out_of_range=True)
    flagging = contract.record_model(features, accept_unseen=False)
    flagging.model_validate({**GOOD, "spend": value})  # the flag policy answers it
    refusing.model_validate({**GOOD, "spend": spend.high})  # the bounds belong to the range
    with pytest.raises(ValidationError) as raised:
        refusing.model_validate({**GOOD, "spend": value})
    (error,) = contract.explain(raised.value, features).errors()
    assert error["type"] == "out_of_range"
    assert error["loc"] == ("spend",)
    assert error["msg"] == f"{side} the allowed range [{spend.low:.6g}, {spend.high:.6g}]"


def test_the_request_schema_shows_the_ranges_it_refuses(features: list[Feature]) -> None:
    spend = next(f for f in features if f.name == "spend")
    refusing = contract.record_model(features, accept_unseen=False, refuse_out_of_range=True)
    field = refusing.model_json_schema()["properties"]["spend"]
    assert (field["minimum"], field["maximum"]) == (spend.low, spend.high)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, float]]


@pytest.mark.parametrize(
    ("body", "kind", "text"),
    [
        (b'{"records": [{"a": 1, "a": 2}]}', "duplicate_key", 'duplicate key "a"'),
        (b'{"records": [], "records": [{"a": 1}]}', "duplicate_key", 'duplicate key "records"'),
        (b'{"records": [', "json_invalid", "Invalid JSON: EOF"),
        (b"[" * 1000 + b"]" * 1000, "json_invalid", "recursion limit"),
        (b'{"records": [{"a": 1}]} {}', "json_invalid", "trailing characters"),
        (b'{"records": [{"a": "\\ud800"}]}', "json_invalid", "Invalid JSON"),
        (b'{"records": [{"a": "x"}]}', "float_parsing", "valid number"),
    ],
)
def test_validate_json_refuses_with_the_rule_broken(
    features: list[Feature], body: bytes, kind: str, text: str
) -> None:
    assert contract.validate_json(Body, b'{"records": [{"a": 1}]}', features).records == [{"a": 1}]
    with pytest.raises(ValidationError) as raised:
        contract.validate_json(Body, body, features)
    error = raised.value.errors()[0]
    assert error["type"] == kind
    assert text in error["msg"]


def test_ranges_flag_each_row_by_side(features: list[Feature]) -> None:
    spend = next(f for f in features if f.name == "spend")
    tenure = next(f for f in features if f.name == "tenure")
    ranges = contract.Ranges(features)
    assert ranges.names == ["tenure", "spend"]
    columns: dict[str, list[float | None]] = {
        "tenure": [1.0, None, tenure.bounds[1] + 1, 2.0],
        "spend": [50.0, spend.bounds[0] - 1, spend.bounds[1] + 1, spend.bounds[0]],
    }
    outside = ranges.outside(columns, 4)
    assert outside.tolist() == [[0, 0], [0, -1], [1, 1], [0, 0]]
    assert ranges.flagged(outside) == [[], ["spend"], ["tenure", "spend"], []]
    assert contract.Ranges([]).outside({}, 3).shape == (3, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="spend"), "input lacks columns: spend"),
        (
            lambda f: f.assign(spend=f["spend"].astype(object).where(f.index != 2, "x")),
            "row 3: spend='x' is not a number",
        ),
        (
            lambda f: f.assign(spend=f["spend"].where(f.index != 0, np.inf)),
            "row 1: spend=inf is infinite",
        ),
        (
            lambda f: f.assign(spend=f["spend"].where(f.index != 4, -1e39)),
            "row 5: spend=-1e+39 is beyond ±3.403e+38",
        ),
        (
            lambda f: f.assign(spend=f["spend"].where(f.index != 0)),
            "row 1: spend is missing but the column is not nullable",
        ),
        (
            lambda f: f.assign(plan=f["plan"].where(f.index != 1, "gold")),
            "row 2: plan='gold' is a category unseen in training",
        ),
        (
            lambda f: f.assign(spend=f["spend"].where(f.index != 9, -500.0)),
            "row 10: spend=-500.0 is below the allowed range [-17.1",
        ),
    ],
)
def test_batch_frames_meet_the_same_contract_naming_row_column_and_rule(
    customers: pd.DataFrame, features: list[Feature], change: Any, message: str
) -> None:
    contract.check_frame(customers, features, accept_unseen=False, refuse_out_of_range=True)
    with pytest.raises(UserError) as raised:
        contract.check_frame(
            change(customers.copy()), features, accept_unseen=False, refuse_out_of_range=True
        )
    assert message in str(raised.value)


def test_a_refused_batch_names_its_first_rows_in_order_and_counts_the_rest(
    customers: pd.DataFrame, features: list[Feature]
) -> None:
    frame = customers.copy()
    frame.loc[[3, 7, 20, 30, 40, 50, 60], "spend"] = 1e6
    frame.loc[5, "plan"] = "gold"
    with pytest.raises(UserError) as raised:
        contract.check_frame(frame, features, False, refuse_out_of_range=True, first_row=1001)
    rows = [part.split(":")[0] for part in str(raised.value).split(": ", 1)[1].split("; ")]
    assert rows == ["row 1004", "row 1006", "row 1008", "row 1021", "row 1031", "and 3 more rows"]
    # Flagging instead of refusing: the same frame meets the contract.
    contract.check_frame(frame.assign(plan="pro"), features, False, refuse_out_of_range=False)


def test_the_one_pass_number_check_agrees_with_the_rules(
    customers: pd.DataFrame, features: list[Feature]
) -> None:
    """check_frame skips the per-column rules of the numbers only when numbers_pass says that
    none is broken: the two agree, with either range policy, on values at every edge."""
    numeric = [f for f in features if f.numeric]
    rng = np.random.default_rng(0)
    edges = [np.nan, np.inf, -np.inf, 1e39, -1e6, 1e6, 0.0]
    verdicts = set()
    for refuse in (True, False):
        for trial in range(30):
            frame = customers.copy()
            if trial:  # the first frame as it is
                row, column = rng.integers(len(frame)), rng.choice([f.name for f in numeric])
                frame.loc[row, column] = rng.choice(edges)
            broken = any(contract.problems(frame[f.name], f, False, refuse) for f in numeric)
            assert contract.numbers_pass(frame, numeric, refuse) is not broken
            verdicts.add(broken)
    assert verdicts == {True, False}
