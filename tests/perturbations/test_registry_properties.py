"""Contract tests run over EVERY registered perturbation (base and modality-specific alike)."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.perturbations import get_perturbation, list_perturbations
from medfm_hf.ssim import ssim

from .conftest import blob_image, grey_image, modality_image, rgb_image, to_uint16

NAMES = list_perturbations()
GEOMETRIC = [n for n in NAMES if get_perturbation(n).geometric]
COLOUR_MODALITIES = ("dermoscopy", "endoscopy", "fundus", "pathology")


def _inputs(p):
    """(label, image) pairs this perturbation must accept: grey/RGB x uint8/uint16."""
    out = []
    for label, img in (("grey", grey_image()), ("rgb", rgb_image())):
        if not p.applies_to(p.modalities[0], img):
            continue
        out.append((f"{label}-uint8", img))
        out.append((f"{label}-uint16", to_uint16(img)))
    return out


def _mid(p) -> float:
    lo, hi = p.strength_range
    return lo + 0.3 * (hi - lo)


def _own_image(p) -> np.ndarray:
    """A demo image of the perturbation's (first colour, for colour-only ones) modality."""
    if p.colour_only:
        modality = next(m for m in p.modalities if m in COLOUR_MODALITIES)
        return modality_image(modality, True)
    return modality_image(p.modalities[0], p.modalities[0] in COLOUR_MODALITIES)


def test_catalog_has_the_14_base_perturbations():
    base = {"gaussian_noise", "salt_pepper", "speckle_noise", "gaussian_blur", "motion_blur", "defocus_blur",
            "jpeg", "pixelate", "contrast", "brightness", "saturation", "rotate", "scale", "translate"}
    assert base <= set(NAMES)
    assert {n for n in NAMES if get_perturbation(n).geometric} >= {"rotate", "scale", "translate"}
    assert get_perturbation("saturation").colour_only


@pytest.mark.parametrize("name", NAMES)
def test_strength_zero_is_identity(name):
    p = get_perturbation(name)
    for _label, img in _inputs(p):
        out = p(img, 0.0, np.random.default_rng(0))
        assert out.dtype == img.dtype and np.array_equal(out, img)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_kept_and_input_not_mutated(name):
    p = get_perturbation(name)
    inputs = _inputs(p)
    assert inputs, f"{name} accepts neither grey nor RGB images"
    for label, img in inputs:
        before = img.copy()
        out = p(img, _mid(p), np.random.default_rng(7))
        assert out.shape == img.shape, label
        assert out.dtype == img.dtype, label
        assert np.array_equal(img, before), f"{name} mutated its {label} input"
        assert not np.array_equal(out, img), f"{name} at strength {_mid(p)} left the {label} image unchanged"


@pytest.mark.parametrize("name", NAMES)
def test_same_rng_seed_same_output(name):
    p = get_perturbation(name)
    for label, img in _inputs(p):
        a = p(img, _mid(p), np.random.default_rng(99))
        b = p(img, _mid(p), np.random.default_rng(99))
        assert np.array_equal(a, b), label


@pytest.mark.parametrize("name", NAMES)
def test_random_draws_do_not_depend_on_strength(name):
    """The registry contract: the same draws whatever the strength (the generator ends in the same state)."""
    p = get_perturbation(name)
    img = _own_image(p)
    lo, hi = p.strength_range
    states = []
    for s in (lo + 0.05 * (hi - lo), hi):
        g = np.random.default_rng(5)
        p(img, s, g)
        states.append(g.bit_generator.state["state"])
    assert states[0] == states[1]


@pytest.mark.parametrize("name", NAMES)
def test_ssim_non_increasing_in_strength(name):
    p = get_perturbation(name)
    img = _own_image(p)
    hi = p.strength_range[1]
    strengths = [hi * f for f in (1 / 64, 1 / 16, 1 / 4, 1 / 2, 1.0)]
    values = [1.0] + [ssim(img, p(img, s, np.random.default_rng(3))) for s in strengths]
    for s, prev, cur in zip(strengths, values[:-1], values[1:]):
        assert cur <= prev + 0.02, f"{name}: SSIM rose from {prev:.3f} to {cur:.3f} at strength {s:.4g}"
    assert values[-1] < 0.99, f"{name}: the top of the strength range barely changes the image ({values[-1]:.4f})"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_mask_follows_image(name):
    p = get_perturbation(name)
    img = blob_image(128)
    mask = img > 128
    for frac in (0.1, 0.3):
        s = p.strength_range[0] + frac * (p.strength_range[1] - p.strength_range[0])
        out, moved = p.apply(img, s, np.random.default_rng(11), mask=mask)
        assert moved is not None and moved.dtype == bool and moved.shape == mask.shape
        derived = out > 128
        assert derived.any(), f"{name} at {s:.3g} moved every blob out of view; pick a milder test strength"
        assert _iou(moved, derived) >= 0.95, f"{name} at strength {s:.3g}: IoU {_iou(moved, derived):.3f}"


@pytest.mark.parametrize("name", GEOMETRIC)
def test_geometric_mask_unchanged_at_zero(name):
    p = get_perturbation(name)
    img = blob_image()
    mask = img > 128
    out, moved = p.apply(img, 0.0, np.random.default_rng(0), mask=mask)
    assert np.array_equal(moved, mask) and np.array_equal(out, img)
