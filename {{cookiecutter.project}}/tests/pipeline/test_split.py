"""Split stage: seeded, stratified, and clear about classes too small to stratify."""

import pandas as pd
import pytest

from tumor_classifier.cli import UserError
from tumor_classifier.params import SplitParams
from tumor_classifier.pipeline.split import split


def test_sizes_and_stratification(cancer: pd.DataFrame) -> None:
    train, test = split(cancer, "diagnosis", SplitParams(test_size=0.2, seed=1, stratify=True))
    assert (len(train), len(test)) == (455, 114)
    share = cancer["diagnosis"].value_counts(normalize=True)
    assert test["diagnosis"].value_counts(normalize=True).sub(share).abs().max() < 0.01


def test_same_seed_same_split_other_seed_other_split(cancer: pd.DataFrame) -> None:
    first, _ = split(cancer, "diagnosis", SplitParams(test_size=0.2, seed=1, stratify=True))
    again, _ = split(cancer, "diagnosis", SplitParams(test_size=0.2, seed=1, stratify=True))
    other, _ = split(cancer, "diagnosis", SplitParams(test_size=0.2, seed=2, stratify=True))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_a_class_of_one_row_cannot_be_stratified(cancer: pd.DataFrame) -> None:
    frame = cancer.copy()
    frame.loc[0, "diagnosis"] = "rare"
    with pytest.raises(UserError, match="class rare has fewer than 2 rows"):
        split(frame, "diagnosis", SplitParams(test_size=0.2, seed=1, stratify=True))
    train, test = split(frame, "diagnosis", SplitParams(test_size=0.2, seed=1, stratify=False))
    assert len(train) + len(test) == len(frame)


def test_a_regression_is_split_without_stratifying_its_values() -> None:
    # Each value once: stratifying would refuse it.
    frame = pd.DataFrame({"x": range(50), "y": [i * 1.5 for i in range(50)]})
    params = SplitParams(test_size=0.2, seed=1, stratify=True)
    with pytest.raises(UserError, match="fewer than 2 rows"):
        split(frame, "y", params)
    train, test = split(frame, "y", params, "regression")
    assert (len(train), len(test)) == (40, 10)
    assert sorted([*train["y"], *test["y"]]) == sorted(frame["y"])
