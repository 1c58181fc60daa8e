"""The role of each column, read from the table alone: what `make schema` decides, and why."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml

from .cli import UserError
from .data import not_numbers
from .params import DataParams

Role = Literal["target", "numeric", "categorical", "drop"]

# Integers with at most this many distinct values are codes (ratings, flags, levels), not amounts.
CATEGORY_LIMIT = 10
# Text or integers this close to one distinct value per row name rows (ids, emails, names).
IDENTIFIER_SHARE = 0.95
# Below this many rows, uniqueness proves nothing: a short table may be all distinct by chance.
IDENTIFIER_MIN_ROWS = 20
# Text that parses as numbers this often is a numeric column with typos in it.
NUMBER_SHARE = 0.9
# Text that parses as a date this often is a date column.
DATE_SHARE = 0.9
# A column missing more often than this is flagged for review: it keeps its role.
MISSING_FLAG = 0.5


@dataclass(frozen=True)
class Decision:
    column: str
    role: Role
    why: str
    flag: str = ""


def _integral(values: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(values) or bool((values % 1 == 0).all())


def decide(name: str, series: pd.Series) -> Decision:
    """One feature column's role, from its values alone."""
    values = series.dropna()
    missing = 1 - len(values) / len(series)
    flag = f"{missing:.0%} missing" if missing > MISSING_FLAG else ""
    distinct = values.nunique()
    if values.empty:
        return Decision(name, "drop", "empty: every value is missing")
    if distinct == 1:
        return Decision(name, "drop", f"constant: always {values.iloc[0]!r}", flag)
    many = len(values) >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * len(values)
    if pd.api.types.is_bool_dtype(values) or set(values.astype(str)) <= {"True", "False"}:
        return Decision(name, "categorical", "boolean", flag)
    if pd.api.types.is_numeric_dtype(values):
        if _integral(values):
            if many:
                return Decision(name, "drop", f"identifier: {distinct} integers in {len(values)}")
            if distinct <= CATEGORY_LIMIT:
                return Decision(name, "categorical", f"integer codes: {distinct} values", flag)
        return Decision(name, "numeric", f"numbers: {distinct} values", flag)
    text = values.astype(str)
    bad = not_numbers(text)
    if 0 < len(bad) <= (1 - NUMBER_SHARE) * len(text):
        raise UserError(
            f"column {name!r} is numeric but {len(bad)} of its values are not numbers "
            f"(e.g. {bad.iloc[0]!r}): fix them in the data, or leave them empty"
        )
    # Dates are dropped, not expanded: parts such as the weekday are features for the data to
    # carry as columns of their own, so that the service receives them as the model sees them.
    dates = pd.to_datetime(text, errors="coerce", format="ISO8601")
    if dates.notna().mean() >= DATE_SHARE:
        return Decision(name, "drop", "date: add numeric parts as columns if they matter", flag)
    if many:
        return Decision(name, "drop", f"identifier: {distinct} distinct texts in {len(values)}")
    return Decision(name, "categorical", f"text: {distinct} values", flag)


def decide_all(frame: pd.DataFrame, data: DataParams) -> list[Decision]:
    """Every column's role, in table order. What params.yaml already says stays: a column under
    data.drop stays dropped (a reviewed leak), one under data.categorical stays categorical."""
    if frame.empty:
        raise UserError("the table has a header but no rows: add rows of data")
    if data.target not in frame.columns:
        raise UserError(
            f"data.target {data.target!r} is not a column of the table: set it in params.yaml to "
            f"one of {', '.join(map(str, frame.columns))}"
        )
    decisions = []
    for name in map(str, frame.columns):
        decision = Decision(name, "target", "data.target")
        if name in data.drop:
            decision = Decision(name, "drop", "listed under data.drop")
        elif name != data.target:
            decision = decide(name, frame[name])
            if name in data.categorical and decision.role == "numeric":
                decision = Decision(name, "categorical", "listed under data.categorical")
        decisions.append(decision)
    return decisions


def table(decisions: list[Decision]) -> str:
    """The decisions as aligned plain text, for a terminal."""
    rows = [("column", "role", "why", "")] + [
        (d.column, d.role, d.why, f"review: {d.flag}" if d.flag else "") for d in decisions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        + (f"  {row[3]}" if row[3] else "")
        for row in rows
    )


def _flow(names: list[str]) -> str:
    return yaml.safe_dump(names, default_flow_style=True, width=10**6).strip()


def write_data_params(path: Path, data: DataParams) -> None:
    """Set data.categorical and data.drop in params.yaml: only those two values change, every
    comment and every other line stays as it was."""
    values = {"categorical": _flow(data.categorical), "drop": _flow(data.drop)}
    lines = path.read_text().splitlines(keepends=True)
    out: list[str] = []
    section, block = False, None  # block: the indent of a list being replaced, item per line
    for line in lines:
        if re.match(r"\S", line):
            section = line.startswith("data:")
        match = re.fullmatch(r"(\s+)(categorical|drop): *([^#\n]*?)(\s*#.*)?\n?", line)
        if section and match and match[2] in values:
            indent, key, old, comment = match.groups()
            comment = comment or ""
            # The comment keeps its column while the value fits before it.
            room = len(old) + len(comment) - len(comment.lstrip())
            value = values.pop(key)
            gap = " " * max(room - len(value), 1) if comment else ""
            out.append(f"{indent}{key}: {value}{gap}{comment.lstrip()}\n")
            block = indent
            continue
        if section and block is not None and re.match(rf"{block}\s*- ", line):
            continue
        block = None
        out.append(line)
    if values:
        raise UserError(f"{path}: no data.{', data.'.join(values)} to set: add it under data:")
    path.write_text("".join(out))
