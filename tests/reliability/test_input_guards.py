"""Bad inputs to the library's entry points fail with one clear error (fault-probe cases 26, 29-32, 104, 106)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm_hf.attacks import AttackError, fgsm, pgd
from medfm_hf.calibration import calibrate
from medfm_hf.models import create_segmenter
from medfm_hf.models.base import SegmenterInputError
from medfm_hf.perturbations import PerturbationError, get_perturbation

IMG = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)


def test_perturbation_needs_a_generator_and_a_strength_in_range():
    p = get_perturbation("gaussian_noise")
    with pytest.raises(PerturbationError, match="seeded numpy Generator"):
        p.apply(IMG, 0.1, None)
    with pytest.raises(PerturbationError, match="above its range"):
        p.apply(IMG, 1e6, np.random.default_rng(0))
    with pytest.raises(PerturbationError, match="above its range"):  # was a 74 GiB allocation
        get_perturbation("motion_blur").apply(IMG, 1e5, np.random.default_rng(0))
    out, _ = p.apply(IMG, p.strength_range[1], np.random.default_rng(0))  # the top itself is allowed
    assert out.shape == IMG.shape and out.dtype == IMG.dtype


@pytest.mark.parametrize("levels", [(1.5,), "13", (True,), 3])
def test_calibrate_refuses_levels_that_are_not_whole_numbers(levels):
    with pytest.raises(PerturbationError, match="levels"):
        calibrate(IMG, "gaussian_noise", image_id="x", levels=levels)


def test_calibrate_still_takes_integer_like_levels():
    assert [r.level for r in calibrate(IMG, "gaussian_noise", image_id="x", levels=(np.int64(2), 4.0))] == [2, 4]


@pytest.fixture(scope="module")
def model():
    return create_segmenter("sam", size="tiny", seed=3)


def test_attack_budget_is_in_image_units(model):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    box, mask = [[4, 4, 20, 20]], torch.zeros(1, 32, 32)
    for eps in (5.0, float("inf"), float("nan"), -0.1):
        with pytest.raises(AttackError, match=r"\[0, 1\]"):
            fgsm(model, x, box, mask, eps)
        with pytest.raises(AttackError, match=r"\[0, 1\]"):
            pgd(model, x, box, mask, eps, 3, generator=torch.Generator().manual_seed(0))
    assert fgsm(model, x, box, mask, 8 / 255).shape == x.shape
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(AttackError, match=r"\[0, 1\]"):
        fgsm(model, bad, box, mask, 8 / 255)


def test_segmenter_refuses_boxes_outside_the_image_and_nan_or_empty_images(model):
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    for box in ([500, 500, 900, 900], [-40, -30, -1, -2], [80, 10, 90, 20]):
        with pytest.raises(SegmenterInputError, match="outside the 64x80 image"):
            model.predict(x, [box])
    assert model.predict(x, [[70, 50, 120, 90]]).shape == (1, 64, 80)  # partly inside: kept
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(SegmenterInputError, match="NaN"):
        model.predict(bad, [[4, 4, 20, 20]])
    with pytest.raises(SegmenterInputError, match="empty"):
        model.predict(torch.zeros(1, 3, 0, 0), [[0, 0, 1, 1]])
