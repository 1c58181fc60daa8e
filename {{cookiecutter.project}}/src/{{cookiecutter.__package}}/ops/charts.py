"""Mermaid charts for the PR report: GitHub draws them in a comment, with no image to host.

GitHub renders ```mermaid blocks wherever it renders Markdown, pull request comments included
(github.com/github/roadmap/issues/372), and Mermaid's `xychart-beta` draws bars and lines
(andrewlock.net/drawing-graphs-in-github-comments-with-mermaid-diagrams). An xychart has no
legend and draws several bar series on top of each other, so the workspace is the blue bars or
line and the champion the orange line, and each title says so.
"""

import json
from collections.abc import Sequence

# Blue for the workspace (challenger), orange for the champion: the order the series are written.
PALETTE = "#2563eb, #f97316"
COLORS = ("blue", "orange")
INIT = "{init: " + json.dumps({"themeVariables": {"xyChart": {"plotColorPalette": PALETTE}}}) + "}"
GRID = [i / 20 for i in range(21)]
# The report's curves: title, axes, and whether y at x is the best reached up to x (ROC) or from x
# on (precision-recall, as its interpolated precision is defined).
CURVES = {
    "roc": ("ROC", ("false positive rate", "true positive rate"), False),
    "precision_recall": ("Precision-recall", ("recall", "precision"), True),
}
Points = Sequence[tuple[float, float]]


def text(value: str) -> str:
    """A quoted Mermaid string (JSON's quoting; Mermaid has no escape for a double quote)."""
    return json.dumps(value.replace('"', "'"), ensure_ascii=False)


def numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{value:.4g}" for value in values) + "]"


def chart(title: str, x_axis: str, y_axis: str, series: list[str]) -> str:
    lines = [
        "```mermaid",
        f"%%{INIT}%%",
        "xychart-beta",
        f"    title {text(title)}",
        f"    x-axis {x_axis}",
        f"    y-axis {y_axis}",
        *(f"    {line}" for line in series),
        "```",
    ]
    return "\n".join(lines) + "\n"


def metrics(champion: dict[str, float], challenger: dict[str, float], label: str) -> str:
    """Each test-set metric of the workspace as a bar, the champion's as a line over it."""
    names = [name for name in challenger if name in champion] or list(challenger)
    if not names:
        return ""
    values = [challenger[n] for n in names] + [champion[n] for n in names if n in champion]
    top = max(1.0, *values)
    series = [f"bar {numbers([challenger[n] for n in names])}"]
    if all(n in champion for n in names):
        series.append(f"line {numbers([champion[n] for n in names])}")
        title = f"Test-set metrics: workspace (blue bars), {label} (orange line)"
    else:
        title = f"Test-set metrics of the workspace ({label} has none)"
    axis = "[" + ", ".join(text(n) for n in names) + "]"
    return chart(title, axis, f"{text('value')} 0 --> {top:.4g}", series)


def resample(points: Points, after: bool) -> list[float]:
    """The curve's y at each x of the grid: the best y reached up to x (a ROC curve), or from x
    on (a precision-recall curve, as its interpolated precision is defined)."""
    ys = []
    for x in GRID:
        reached = [py for px, py in points if (px >= x - 1e-9 if after else px <= x + 1e-9)]
        ys.append(max(reached, default=0.0))
    return ys


def curve(
    title: str,
    axes: tuple[str, str],
    champion: Points,
    challenger: Points,
    label: str,
    *,
    after: bool = False,
) -> str:
    """The workspace's curve and the champion's, sampled every 0.05 along x."""
    drawn = [
        (who, points) for who, points in (("workspace", challenger), (label, champion)) if points
    ]
    if not drawn:
        return ""
    shown = ", ".join(f"{who} ({color})" for (who, _), color in zip(drawn, COLORS, strict=False))
    series = [f"line {numbers(resample(points, after))}" for _, points in drawn]
    x, y = axes
    return chart(f"{title}: {shown}", f"{text(x)} 0 --> 1", f"{text(y)} 0 --> 1", series)


def drawings(
    champion: dict[str, float],
    challenger: dict[str, float],
    champion_curves: dict[str, list[tuple[float, float]]],
    challenger_curves: dict[str, list[tuple[float, float]]],
    label: str,
) -> list[str]:
    """Every chart of the report that has data: the metrics, then each curve."""
    drawn = [metrics(champion, challenger, label)]
    drawn += [
        curve(
            title,
            axes,
            champion_curves.get(name, []),
            challenger_curves.get(name, []),
            label,
            after=after,
        )
        for name, (title, axes, after) in CURVES.items()
    ]
    return [chart for chart in drawn if chart]
