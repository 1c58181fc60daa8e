"""Markdown tables for the reports people read: the one table writer."""

from collections.abc import Iterable, Sequence

Cell = str | int | float | None


def cell(value: Cell) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
