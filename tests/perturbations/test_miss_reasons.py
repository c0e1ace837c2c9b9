"""A band missed at the physical ceiling is ``ceiling`` while the effect still grows, ``saturated`` once it has stopped."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.calibration import calibrate
from medfm_hf.perturbations import registry


def _blend(image: np.ndarray, weight: float) -> np.ndarray:
    x = image.astype(np.float64)
    return np.clip(np.rint((1 - weight) * x + weight * x.mean()), 0, 255).astype(image.dtype)


@pytest.fixture
def toy_perturbations(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_perturbation("toy_plateau", strength_range=(0.0, 1.0), description="toy", ceiling=1.0,
                                    ceiling_note="toy: the effect stops at strength 0.2")
    def toy_plateau(image, strength, rng):
        """Contrast loss that stops growing at strength 0.2.

        Ceiling: 1 (toy).
        """
        return _blend(image, 0.3 * min(strength, 0.2) / 0.2)

    @registry.register_perturbation("toy_growing", strength_range=(0.0, 1.0), description="toy", ceiling=1.0,
                                    ceiling_note="toy: still growing at the ceiling")
    def toy_growing(image, strength, rng):
        """Contrast loss still growing at the ceiling.

        Ceiling: 1 (toy).
        """
        return _blend(image, 0.3 * strength)


def test_reasons_tell_a_plateau_from_a_ceiling(toy_perturbations):
    img = (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)
    plateau = calibrate(img, "toy_plateau", image_id="toy")
    growing = calibrate(img, "toy_growing", image_id="toy")
    assert [r.in_band for r in plateau] == [r.in_band for r in growing]  # same SSIM at the ceiling
    missed = [(a, b) for a, b in zip(plateau, growing) if not a.in_band]
    assert missed, "the toy blend should be too mild for the strongest bands"
    assert all(a.reason == "saturated" and b.reason == "ceiling" for a, b in missed)
    assert all(r.strength <= 1.0 for r in plateau + growing)
