"""PNG figures for the reports: the only module that imports matplotlib, which is slow to load."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: the same output on a laptop, in CI and in tests
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def figure(width: float = 6, height: float = 4) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def save(fig: Figure, path: Path) -> None:
    """Write a PNG; fixed metadata keeps the bytes identical for identical plots."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
