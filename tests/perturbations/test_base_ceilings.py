"""The generic perturbations declare their physical ceilings, and the calibrator keeps to them."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.calibration import BANDS, calibrate, derive_seed
from medfm_hf.perturbations import get_perturbation, list_perturbations
from medfm_hf.ssim import ssim

BASE = [n for n in list_perturbations() if get_perturbation(n).family == "base"]


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_all_fourteen_are_covered():
    assert len(BASE) == 14


@pytest.mark.parametrize("name", BASE)
def test_ceiling_is_declared_in_metadata_and_docstring(name):
    p = get_perturbation(name)
    lo, hi = p.strength_range
    assert p.ceiling is not None and lo < p.ceiling <= hi and p.max_strength == p.ceiling
    assert len(p.ceiling_note) > 40, "the note must give the physical reason"
    doc = _norm(p.fn.__doc__)
    # the docstring's Ceiling paragraph states the same value and the same reason as the registry
    assert f"Ceiling: strength <= {p.ceiling:g} ({_norm(p.ceiling_note)})." in doc


@pytest.mark.parametrize("name", ["jpeg", "gaussian_blur", "pixelate", "contrast", "brightness"])
def test_calibration_stops_at_the_ceiling(name):
    """On a smooth image the strong bands lie beyond the ceiling: reported as such, never exceeded."""
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.clip(100 + 0.3 * xx + 0.2 * yy + 8 * np.sin(xx / 6.0) * np.cos(yy / 8.0), 0, 255).astype(np.uint8)
    p = get_perturbation(name)
    results = calibrate(img, name, image_id="t/smooth")
    assert all(r.strength <= p.max_strength for r in results)
    missed = [r for r in results if not r.in_band]
    assert missed and all(r.reason == "ceiling" for r in missed)
    # the range's top (beyond the ceiling) would have reached the missed bands: the ceiling is what stops them
    beyond = p.apply(img, p.strength_range[1], np.random.default_rng(derive_seed(0, "t/smooth", name)))[0]
    for r in missed:
        assert r.strength == p.max_strength and r.ssim > BANDS[r.level][1]
        assert ssim(img, beyond) < r.ssim
