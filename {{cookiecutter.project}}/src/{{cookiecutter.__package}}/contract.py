"""The model's input contract from the training schema: names, types, nulls, categories, ranges."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, TypeVar

import jiter
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from .cli import UserError
from .data import feature_columns
from .params import DataParams, parse_yaml

# ONNX Runtime computes in 32-bit floats: a larger number would become infinity there and get a
# confident, meaningless answer, so the contract refuses it whatever the range policy.
LARGEST = float(np.finfo(np.float32).max)
SHOWN_ROWS = 5  # rows a refused batch names
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Feature:
    name: str
    numeric: bool
    nullable: bool
    categories: tuple[str, ...] = ()
    low: float | None = None  # the reviewed range of a number (in_range in data/schema.yaml)
    high: float | None = None

    @property
    def ranged(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high), infinite where the schema sets no bound."""
        low = -np.inf if self.low is None else self.low
        return low, np.inf if self.high is None else self.high

    def outside(self, side: str) -> str:
        """What a value on this side of the range is told: `below the allowed range [1, 5]`."""
        return f"{side} the allowed range [{self.low:.6g}, {self.high:.6g}]"


def from_schema(schema_yaml: str, data: DataParams) -> list[Feature]:
    """The model's inputs as data/schema.yaml declares them, in the model's order (the columns
    data.feature_columns selects: numbers, then categories)."""
    columns = parse_yaml(schema_yaml)["columns"]
    numeric, categorical = feature_columns(list(columns), data)
    features = []
    for name in numeric + categorical:
        spec = columns[name]
        nullable = bool(spec.get("nullable"))
        if name in numeric:
            bounds = spec.get("in_range") or {}
            low, high = bounds.get("min_value"), bounds.get("max_value")
            features.append(
                Feature(
                    name,
                    True,
                    nullable,
                    low=None if low is None else float(low),
                    high=None if high is None else float(high),
                )
            )
        else:
            allowed = tuple(map(str, spec.get("isin") or ()))
            features.append(Feature(name, False, nullable, allowed))
    return features


def dump(features: list[Feature]) -> str:
    return json.dumps([asdict(f) for f in features], indent=2)


def load_text(text: str) -> list[Feature]:
    return [Feature(**{**f, "categories": tuple(f["categories"])}) for f in json.loads(text)]


def record_model(
    features: list[Feature], accept_unseen: bool, refuse_out_of_range: bool = False
) -> type[BaseModel]:
    """A strict pydantic model of one record: every field required, no extras, finite numbers,
    within their reviewed range when refusing (so the OpenAPI schema shows the range too)."""
    fields: dict[str, Any] = {}
    for f in features:
        kind: Any = str
        if f.numeric:
            low, high = -LARGEST, LARGEST
            if refuse_out_of_range and f.low is not None and f.high is not None:
                low, high = max(low, f.low), min(high, f.high)
            kind = Annotated[float, Field(ge=low, le=high)]
        elif f.categories and not accept_unseen:
            kind = Literal[f.categories]
        fields[f.name] = (kind | None if f.nullable else kind, ...)
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


# Validating parsed JSON, pydantic speaks of Python types; a client sent JSON.
JSON_WORDS = {
    "model_type": "Input should be an object",
    "dict_type": "Input should be an object",
    "list_type": "Input should be an array",
}


def explain(error: ValidationError, features: list[Feature]) -> ValidationError:
    """The same errors, where a number outside its range says which side and the whole range
    (pydantic names one bound only), in JSON's words. Runs on refusals only."""
    ranged = {f.name: f for f in features if f.ranged}
    sides = {"greater_than_equal": "below", "less_than_equal": "above"}
    details: list[InitErrorDetails] = []
    for e in error.errors(include_url=False):
        feature = ranged.get(str(e["loc"][-1])) if e["loc"] else None
        if feature is not None and e["type"] in sides:
            kind: Any = PydanticCustomError("out_of_range", feature.outside(sides[e["type"]]))
        elif e["type"] in JSON_WORDS:
            kind = PydanticCustomError(e["type"], JSON_WORDS[e["type"]])
        else:
            details.append(
                {"type": e["type"], "loc": e["loc"], "input": e["input"], "ctx": e.get("ctx", {})}
            )
            continue
        details.append({"type": kind, "loc": e["loc"], "input": e["input"]})
    return ValidationError.from_exception_data(error.title, details)


def validate_json(model: type[Model], body: bytes, features: list[Feature]) -> Model:
    """A request body's one parse and one validation. JSON parsers keep the last of duplicate
    keys silently; jiter (pydantic's parser) can refuse them, so a record means one thing."""
    try:
        data = jiter.from_json(body or b"{}", catch_duplicate_keys=True)
    except ValueError as error:
        message = str(error)
        kind: Any = (
            PydanticCustomError("duplicate_key", "{error}", {"error": message})
            if message.startswith("Detected duplicate key")
            else "json_invalid"
        )
        detail: InitErrorDetails = {"type": kind, "loc": (), "input": None}
        detail["ctx"] = {"error": message}
        raise ValidationError.from_exception_data(model.__name__, [detail]) from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise explain(error, features) from None


class Ranges:
    """The reviewed ranges of the numeric features, for vectorised checks of many rows."""

    def __init__(self, features: list[Feature]) -> None:
        ranged = [f for f in features if f.numeric and f.ranged]
        self.names = [f.name for f in ranged]
        self.low = np.asarray([f.low for f in ranged], dtype=np.float64)
        self.high = np.asarray([f.high for f in ranged], dtype=np.float64)

    def outside(self, columns: Mapping[str, Sequence[Any] | np.ndarray], rows: int) -> np.ndarray:
        """Rows by ranged features: -1 below the range, 1 above, 0 inside or missing."""
        if not self.names:
            return np.zeros((rows, 0), dtype=np.int8)
        values = np.asarray([columns[n] for n in self.names], dtype=np.float64).T
        return (values > self.high).astype(np.int8) - (values < self.low).astype(np.int8)

    def flagged(self, outside: np.ndarray) -> list[list[str]]:
        """Each row's features outside their range, by name."""
        return [[self.names[j] for j in np.flatnonzero(row)] for row in outside]


MISSING = "is missing but the column is not nullable"


def problems(
    column: pd.Series, feature: Feature, accept_unseen: bool, refuse_out_of_range: bool
) -> list[tuple[np.ndarray, str]]:
    """(rows as a boolean mask, rule) for each rule of the contract that the column breaks."""
    found: list[tuple[np.ndarray, str]] = []
    # A column read as floats is its numbers already, NaN where missing: numpy alone checks it.
    floats = feature.numeric and pd.api.types.is_float_dtype(column.dtype)
    values = column.to_numpy(dtype=np.float64, na_value=np.nan) if floats else None
    missing = np.isnan(values) if values is not None else column.isna().to_numpy()
    if not feature.nullable:
        found.append((missing, MISSING))
    if feature.numeric:
        if values is None:
            numbers = pd.to_numeric(column, errors="coerce")
            values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        found.append((np.isnan(values) & ~missing, "is not a number"))
        found.append((np.isinf(values), "is infinite"))
        beyond = np.isfinite(values) & (np.abs(values) > LARGEST)
        found.append((beyond, f"is beyond ±{LARGEST:.4g} (32-bit floats)"))
        if refuse_out_of_range and feature.ranged:
            found.append((values < feature.low, f"is {feature.outside('below')}"))
            found.append((values > feature.high, f"is {feature.outside('above')}"))
    elif feature.categories and not accept_unseen:
        unseen = ~column.astype(str).isin(feature.categories).to_numpy() & ~missing
        found.append((unseen, "is a category unseen in training"))
    return [(rows, rule) for rows, rule in found if rows.any()]


def numbers_pass(frame: pd.DataFrame, numeric: list[Feature], refuse_out_of_range: bool) -> bool:
    """Whether the numeric columns, read as floats, meet every rule of problems(): a few numpy
    passes a column, where problems() takes more to name what breaks."""
    for f in numeric:
        values = frame[f.name].to_numpy()
        if values.dtype.kind != "f":
            return False
        low, high = f.bounds if refuse_out_of_range and f.ranged else (-LARGEST, LARGEST)
        inside = (values >= max(low, -LARGEST)) & (values <= min(high, LARGEST))  # never NaN
        if f.nullable:
            inside |= np.isnan(values)
        if not inside.all():
            return False
    return True


def check_frame(
    frame: pd.DataFrame,
    features: list[Feature],
    accept_unseen: bool,
    refuse_out_of_range: bool = False,
    first_row: int = 1,
) -> None:
    """Batch rows meet the same contract as requests, or one line names the first rows that break
    it, each with its column, value and rule (rows count from first_row: 1 is the first row of
    data, after a header)."""
    missing = [f.name for f in features if f.name not in frame]
    if missing:
        raise UserError(f"input lacks columns: {', '.join(missing)}")
    if numbers_pass(frame, [f for f in features if f.numeric], refuse_out_of_range):
        features = [f for f in features if not f.numeric]
    broken = np.zeros(len(frame), dtype=bool)
    shown: dict[int, str] = {}  # row -> its first problem, for the first rows only
    for f in features:
        for rows, rule in problems(frame[f.name], f, accept_unseen, refuse_out_of_range):
            broken |= rows
            for row in np.flatnonzero(rows)[:SHOWN_ROWS].tolist():
                value = frame[f.name].iloc[row]
                value = value.item() if hasattr(value, "item") else value  # numpy prints as Python
                cell = f.name if rule == MISSING else f"{f.name}={value!r}"
                shown.setdefault(row, f"row {first_row + row}: {cell} {rule}")
    if shown:
        first = [shown[row] for row in sorted(shown)[:SHOWN_ROWS]]
        more = int(broken.sum()) - len(first)
        rest = f"; and {more} more rows" if more > 0 else ""
        raise UserError(f"input breaks the contract: {'; '.join(first)}{rest}")
