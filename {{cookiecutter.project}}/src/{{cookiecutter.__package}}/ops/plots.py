"""The PR report's plots: Mermaid charts for the comment and PNGs beside it, champion and challenger
on the same axes."""

import math
from pathlib import Path

from .. import figures
from . import charts
from .revisions import CURVES, Side, union


def plot_metrics(champion: Side, challenger: Side, path: Path) -> bool:
    """Bars of each test-set metric, champion beside challenger."""
    old, new = champion.scores(), challenger.scores()
    names = union(new, old)
    if not names:
        return False
    fig, ax = figures.figure(max(6.0, 1.1 * len(names)), 3.5)
    for offset, side, values in ((-0.2, champion.label, old), (0.2, challenger.label, new)):
        heights = [values.get(n, math.nan) for n in names]
        bars = ax.bar([i + offset for i in range(len(names))], heights, width=0.4, label=side)
        labels = ["" if math.isnan(h) else f"{h:.3f}" for h in heights]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(names)), names)
    ax.set(title="test-set metrics: champion and challenger")
    ax.margins(y=0.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    figures.save(fig, path)
    return True


def plot_curve(name: str, champion: Side, challenger: Side, path: Path) -> bool:
    """One curve of each side on the same axes."""
    if not champion.curves[name] and not challenger.curves[name]:
        return False
    x, y = CURVES[name]
    fig, ax = figures.figure(4.5, 4)
    for side, style in ((champion, "--"), (challenger, "-")):
        if side.curves[name]:
            xs, ys = zip(*side.curves[name], strict=True)
            auc = getattr(side.metrics, "roc_auc", None) if name == "roc" else None
            label = side.label if auc is None else f"{side.label}, AUC {auc:.4f}"
            ax.plot(xs, ys, linestyle=style, label=label)
    if name == "roc":
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel=x, ylabel=y, title=name.replace("_", " "), xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right" if name == "roc" else "lower left")
    figures.save(fig, path)
    return True


def plots(champion: Side, challenger: Side, out: Path) -> list[str]:
    """Mermaid charts, which GitHub draws in the comment, and the same plots as PNG files."""
    drawn = {"metrics": plot_metrics(champion, challenger, out / "metrics.png")}
    drawn |= {n: plot_curve(n, champion, challenger, out / f"{n}.png") for n in CURVES}
    for name, done in drawn.items():
        if not done:  # no stale picture from an earlier run
            (out / f"{name}.png").unlink(missing_ok=True)
    mermaid = charts.drawings(
        champion.scores(), challenger.scores(), champion.curves, challenger.curves, champion.label
    )
    pngs = ", ".join(f"`{n}.png`" for n, done in drawn.items() if done)
    if not pngs:
        return []
    note = f"The same plots as PNG: {pngs}, beside this report (in CI, the run's artifact).\n"
    return ["### Plots\n", *mermaid, note]
