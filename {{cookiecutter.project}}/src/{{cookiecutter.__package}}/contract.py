"""The service's input contract from the training schema: names, types, nulls, categories."""

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model

from .cli import UserError
from .data import feature_columns
from .params import DataParams

# ONNX Runtime computes in 32-bit floats: a larger number would become infinity there and get a
# confident, meaningless answer, so the contract refuses it.
LARGEST = float(np.finfo(np.float32).max)
Number = Annotated[float, Field(ge=-LARGEST, le=LARGEST)]


@dataclass(frozen=True)
class Feature:
    name: str
    numeric: bool
    nullable: bool
    categories: tuple[str, ...] = ()


def from_schema(schema_yaml: str, data: DataParams) -> list[Feature]:
    """The model's inputs as data/schema.yaml declares them, in the model's order (the columns
    data.feature_columns selects: numbers, then categories)."""
    columns = yaml.safe_load(schema_yaml)["columns"]
    numeric, categorical = feature_columns(list(columns), data)
    features = []
    for name in numeric + categorical:
        spec = columns[name]
        allowed = () if name in numeric else tuple(map(str, spec.get("isin") or ()))
        features.append(Feature(name, name in numeric, bool(spec.get("nullable")), allowed))
    return features


def dump(features: list[Feature]) -> str:
    return json.dumps([asdict(f) for f in features], indent=2)


def load_text(text: str) -> list[Feature]:
    return [Feature(**{**f, "categories": tuple(f["categories"])}) for f in json.loads(text)]


def record_model(features: list[Feature], accept_unseen: bool) -> type[BaseModel]:
    """A strict pydantic model of one record: every field required, no extras, finite numbers."""
    fields: dict[str, Any] = {}
    for f in features:
        kind: Any = Number if f.numeric else str
        if not f.numeric and f.categories and not accept_unseen:
            kind = Literal[f.categories]
        fields[f.name] = (kind | None if f.nullable else kind, ...)
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    return create_model("Record", __config__=config, **fields)


def check_frame(frame: pd.DataFrame, features: list[Feature], accept_unseen: bool) -> None:
    """Batch inputs meet the same contract as requests, or one line says which column breaks it."""
    missing = [f.name for f in features if f.name not in frame]
    if missing:
        raise UserError(f"input lacks columns: {', '.join(missing)}")
    for f in features:
        column = frame[f.name]
        if f.numeric and not pd.api.types.is_numeric_dtype(column):
            raise UserError(f"column {f.name!r} must be numeric")
        if f.numeric and np.isinf(column).any():
            raise UserError(f"column {f.name!r} has infinite values")
        if f.numeric and (column.abs() > LARGEST).any():
            raise UserError(f"column {f.name!r} has values beyond ±{LARGEST:.4g} (32-bit floats)")
        if not f.nullable and column.isna().any():
            raise UserError(f"column {f.name!r} has missing values but is not nullable")
        if not f.numeric and f.categories and not accept_unseen:
            unseen = set(column.dropna().astype(str)) - set(f.categories)
            if unseen:
                shown = ", ".join(sorted(unseen)[:5])
                raise UserError(f"column {f.name!r} has values unseen in training: {shown}")
