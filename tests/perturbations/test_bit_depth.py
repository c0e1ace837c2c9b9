"""12-bit data stored in uint16 (0-4095, the common CT/X-ray case) is perturbed in its real range."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.calibration import calibrate
from medfm_hf.perturbations import PerturbationError, get_perturbation, list_perturbations
from medfm_hf.perturbations.registry import stored_range

from .conftest import modality_image

COLOUR = ("dermoscopy", "endoscopy", "fundus", "pathology")


def _twelve_bit(p) -> np.ndarray:
    modality = next((m for m in p.modalities if m in COLOUR), p.modalities[0]) if p.colour_only else p.modalities[0]
    img8 = modality_image(modality, modality in COLOUR)
    rng = np.random.default_rng(3)
    return np.clip(img8.astype(np.int64) * 16 + rng.integers(0, 16, img8.shape), 0, 4095).astype(np.uint16)


def test_stored_range():
    assert stored_range(np.array([[0, 4095]], np.uint16)) == 4095
    assert stored_range(np.array([[0, 4096]], np.uint16)) == 16383
    assert stored_range(np.array([[0, 200]], np.uint8)) == 255
    assert stored_range(np.array([[0, 10]], np.uint16), 65535) == 65535


@pytest.mark.parametrize("name", list_perturbations())
def test_every_perturbation_works_on_12_bit_data(name):
    p = get_perturbation(name)
    img = _twelve_bit(p)
    lo, hi = p.strength_range
    strength = min(lo + 0.3 * (hi - lo), p.max_strength)
    out = p.apply(img, strength, np.random.default_rng(0))[0]
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert int(out.max()) <= 4095  # stays in the stored range (no value above 12 bits)
    assert out.max() > 0 and out.std() > 0  # never all black or flat
    assert not np.array_equal(out, img)
    # perturbing in the real range = perturbing the full-range image and scaling back
    full = np.rint(img.astype(np.float64) * 65535 / 4095).astype(np.uint16)
    out_full = p.apply(full, strength, np.random.default_rng(0), data_range=65535)[0]
    back = np.clip(np.rint(out_full * (4095 / 65535)), 0, 4095).astype(np.uint16)
    assert np.array_equal(out, back)
    assert np.array_equal(p.apply(img, 0.0, np.random.default_rng(0))[0], img)


def test_brightness_and_jpeg_on_12_bit_keep_the_image():
    img = _twelve_bit(get_perturbation("jpeg"))
    out = get_perturbation("jpeg").apply(img, 50.0, np.random.default_rng(0))[0]
    assert abs(float(out.mean()) - float(img.mean())) < 0.02 * 4095  # was crushed to black through /257
    res = calibrate(img, "brightness", image_id="t/12bit", levels=(1, 3))
    assert all(r.in_band for r in res)
    assert all(0 < r.image.mean() < 4095 for r in res)


def test_values_above_the_declared_range_are_refused():
    img = np.full((16, 16), 5000, np.uint16)
    img[0, 0] = 0
    with pytest.raises(PerturbationError, match="exceeds its data_range"):
        get_perturbation("gaussian_noise").apply(img, 0.1, np.random.default_rng(0), data_range=4095)
