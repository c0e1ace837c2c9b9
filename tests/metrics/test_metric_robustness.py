"""Robustness drop: hand-computed values, NaN pairs, errors."""

from __future__ import annotations

import math

import pytest

from medfm_hf.metrics import robustness_drop


def test_per_level_and_overall_by_hand():
    clean = [0.9, 0.7, 0.9, 0.7, 0.9, 0.7]
    pert = [0.8, 0.7, 0.5, 0.3, 0.0, 0.2]
    out = robustness_drop(pert, clean, levels=[1, 1, 3, 3, 5, 5])
    assert out["levels"] == [1, 3, 5]
    assert out["per_level"][1]["absolute_drop"] == pytest.approx(0.8 - 0.75)
    assert out["per_level"][3]["relative_drop"] == pytest.approx((0.8 - 0.4) / 0.8)
    assert out["per_level"][5]["perturbed"] == pytest.approx(0.1)
    assert out["absolute_drop"] == pytest.approx(((0.8 - 0.75) + (0.8 - 0.4) + (0.8 - 0.1)) / 3)
    assert out["relative_drop"] == pytest.approx(out["absolute_drop"] / 0.8)
    assert out["pooled"]["num_pairs"] == 6 and out["num_excluded"] == 0


def test_levels_weigh_the_same_overall_but_not_pooled():
    # level 1 has three pairs, level 2 one: the overall mean is per level, the pooled one per pair
    out = robustness_drop([1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], levels=[1, 1, 1, 2])
    assert out["absolute_drop"] == pytest.approx(0.5)
    assert out["pooled"]["absolute_drop"] == pytest.approx(0.25)


def test_nan_pairs_are_excluded_and_counted():
    out = robustness_drop([0.5, float("nan"), 0.2], [1.0, 1.0, float("nan")], levels=[2, 2, 2])
    assert out["num_pairs"] == 1 and out["num_excluded"] == 2
    assert out["per_level"][2]["clean"] == 1.0 and out["absolute_drop"] == 0.5


def test_zero_clean_score_and_default_level():
    out = robustness_drop([0.0, 0.0], [0.0, 0.0])
    assert out["levels"] == [1]
    assert out["absolute_drop"] == 0.0
    assert math.isnan(out["relative_drop"])


def test_length_mismatch_is_explained():
    with pytest.raises(ValueError, match="one clean score and one level"):
        robustness_drop([0.1, 0.2], [0.3], levels=[1, 1])
