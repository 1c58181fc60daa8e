"""Online drift: each feature's population stability index over the service's recent requests.

Cheap by construction, since it runs inside every request: a record becomes one bin number per
feature (all numeric features in one vectorised comparison), the counts of a fixed window move by
one, and the index is recomputed from the counts only every few requests.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..contract import Feature
from ..data import text

EPSILON = 1e-4  # keeps an empty bin from making the index infinite


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins."""
    a, e = actual + EPSILON, expected + EPSILON
    return float(np.sum((a - e) * np.log(a / e)))


class OnlineDrift:
    """The index of each feature and of the prediction over the last `window` records seen.

    Bins: a number falls in a quantile bin of the training data, a missing number in a bin of its
    own after them; a category has its bin, an unseen category the bin after them. The prediction
    is a category (a class) or, for a regression, a number: the reference stage binned it so.
    """

    def __init__(self, features: list[Feature], stats: Mapping[str, Any], window: int) -> None:
        self.numeric = [f.name for f in features if f.numeric]
        self.categorical = [f.name for f in features if not f.numeric]
        self.numeric_prediction = "edges" in stats["prediction"]
        (self.numeric if self.numeric_prediction else self.categorical).append("prediction")
        self.names = self.numeric + self.categorical
        edges = [np.asarray(stats[n]["edges"], dtype=np.float64) for n in self.numeric]
        width = max([len(e) for e in edges], default=0)
        self.edges = np.full((len(edges), width), np.inf)  # padding never counts
        for i, e in enumerate(edges):
            self.edges[i, : len(e)] = e
        self.missing = np.asarray([len(e) + 1 for e in edges], dtype=np.int64)
        self.lookup = [
            {c: i for i, c in enumerate(stats[n]["categories"])} for n in self.categorical
        ]
        expected = [np.asarray(stats[n]["shares"]) for n in self.numeric] + [
            np.asarray([*stats[n]["categories"].values(), 0.0]) for n in self.categorical
        ]
        self.expected = np.zeros((len(self.names), max(len(e) for e in expected)))
        for i, shares in enumerate(expected):
            self.expected[i, : len(shares)] = shares
        self.window = np.zeros((window, len(self.names)), dtype=np.int64)
        self.counts = np.zeros_like(self.expected)
        self.rows = np.arange(len(self.names))
        self.seen = 0

    def bins(self, columns: Mapping[str, Sequence[Any]], predictions: Sequence[Any]) -> np.ndarray:
        """One row of bin numbers per record."""
        columns = {**columns, "prediction": predictions}
        values = np.asarray([columns[n] for n in self.numeric], dtype=np.float64).T
        numeric = (self.edges[None, :, :] <= values[:, :, None]).sum(axis=2)
        numeric = np.where(np.isnan(values), self.missing, numeric)
        texts = [text(columns[n]) for n in self.categorical]
        categorical = [
            [lookup.get(v, len(lookup)) for v in values_]
            for lookup, values_ in zip(self.lookup, texts, strict=True)
        ]
        # Shaped explicitly: a regression without categorical features has no such column.
        categories = np.asarray(categorical, dtype=np.int64).reshape(len(texts), len(predictions))
        return np.concatenate([numeric, categories.T], axis=1)

    def observe(self, columns: Mapping[str, Sequence[Any]], predictions: Sequence[Any]) -> None:
        """Add a request's records to the window, pushing the oldest out."""
        new = self.bins(columns, predictions)[-len(self.window) :]
        positions = self.seen + np.arange(len(new))
        slots = positions % len(self.window)
        evicted = positions >= len(self.window)  # these slots hold a record that leaves the window
        np.subtract.at(self.counts, (self.rows, self.window[slots[evicted]]), 1)
        self.window[slots] = new
        np.add.at(self.counts, (self.rows, new), 1)
        self.seen += len(new)

    def indices(self) -> dict[str, float]:
        """Each feature's (and the prediction's) index; NaN until the window holds enough."""
        filled = min(self.seen, len(self.window))
        if filled < len(self.window) // 10:
            return dict.fromkeys(self.names, math.nan)
        a, e = self.counts / filled + EPSILON, self.expected + EPSILON
        indices = ((a - e) * np.log(a / e)).sum(axis=1)  # psi() of every row at once
        return dict(zip(self.names, indices.tolist(), strict=True))
