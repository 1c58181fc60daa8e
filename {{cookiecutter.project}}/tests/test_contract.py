"""The input contract: derived from the schema, strict about types, nulls and categories."""

from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

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
def test_features_follow_the_schema_without_target_or_identifiers(features: list[Feature]) -> None:
    assert features == [
        Feature("tenure", numeric=True, nullable=True),
        Feature("spend", numeric=True, nullable=False),
        Feature("plan", numeric=False, nullable=False, categories=("basic", "plus", "pro")),
        Feature(
            "region", numeric=False, nullable=True, categories=("east", "north", "south", "west")
        ),
    ]
    assert contract.load_text(contract.dump(features)) == features


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="spend"), "input lacks columns: spend"),
        (lambda f: f.assign(spend="x"), "column 'spend' must be numeric"),
        (lambda f: f.assign(spend=float("inf")), "column 'spend' has infinite values"),
        (lambda f: f.assign(spend=-1e39), "column 'spend' has values beyond ±3.403e"),
        (
            lambda f: f.assign(spend=f["spend"].where(f.index != 0)),
            "column 'spend' has missing values but is not nullable",
        ),
        (lambda f: f.assign(plan="gold"), "column 'plan' has values unseen in training: gold"),
    ],
)
def test_batch_frames_meet_the_same_contract(
    customers: pd.DataFrame, features: list[Feature], change: Any, message: str
) -> None:
    contract.check_frame(customers, features, accept_unseen=False)
    with pytest.raises(UserError, match=message):
        contract.check_frame(change(customers.copy()), features, accept_unseen=False)
