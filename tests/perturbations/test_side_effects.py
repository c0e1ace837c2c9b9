"""Registry-wide property test: no level is bought by a side effect (issue 12, item 5).

For every registered perturbation, on one demo test image of each of its modalities (resized to 96 px
to stay fast), every calibrated level is checked with :func:`medfm_hf.perturbations.audit.side_effects`:
<= 5 % newly saturated and <= 5 % newly zero pixels in the FOV, >= 70 % of the high-pass noise energy
kept, >= 25 % of the SSIM loss not explained by a global affine map -- unless the perturbation declares
the side effect as its artifact (``side_effects``) or as a known defect still to fix (``pending``),
each with a note. ``benchmarks/physics_audit.py`` runs the same measures on the whole demo test set.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from medfm_hf.calibration import calibrate
from medfm_hf.perturbations import get_perturbation, list_perturbations
from medfm_hf.perturbations.audit import side_effects, violations
from medfm_hf.perturbations.ct import ct_window
from medfm_hf.perturbations.registry import SIDE_EFFECTS

SIZE = 96
NAMES = list_perturbations()


@functools.cache
def _image(modality: str):
    from medfm_hf.sources.demo import load_demo

    rec = load_demo(split="test", modalities=[modality])[0]
    img = cv2.resize(rec.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA).reshape((SIZE, SIZE) + rec.image.shape[2:])
    fov = cv2.resize(rec.fov.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST).astype(bool)
    mask = cv2.resize(rec.mask.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST).astype(bool)
    return img, fov, mask, rec.image_id, ct_window(rec.meta) if modality == "ct" else None


def test_declarations_are_well_formed():
    for name in NAMES:
        p = get_perturbation(name)
        assert set(p.side_effects) <= set(SIDE_EFFECTS) and set(p.pending) <= set(SIDE_EFFECTS)
        assert not (p.side_effects & p.pending), name
        if p.side_effects:
            assert p.side_effect_note, f"{name}: declared side effects need a note saying why they are the artifact"
        if p.pending:
            assert p.pending_note, f"{name}: pending defects need a note"
        if p.ceiling is not None:
            assert p.ceiling_note and p.strength_range[0] < p.ceiling <= p.strength_range[1], name


@pytest.mark.parametrize("name", NAMES)
def test_no_level_is_bought_by_a_side_effect(name):
    p = get_perturbation(name)
    allowed = p.side_effects | p.pending
    checked = 0
    for modality in p.modalities:
        img, fov, mask, image_id, window = _image(modality)
        if not p.applies_to(modality, img):
            continue
        for res in calibrate(img, name, image_id=image_id, mask=mask, fov=fov, window=window):
            measures = side_effects(img, res.image, fov, 255)
            bad = violations(measures, allowed)
            assert not bad, (f"{name} on {image_id} level {res.level} (SSIM {res.ssim:.3f}): {bad} "
                             f"{ {k: round(v, 3) for k, v in measures.items()} }")
            checked += 1
    assert checked > 0


def test_the_measures_catch_what_they_should():
    """A brightness shift is affine, a blur removes noise, clipping saturates: the measures see it."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 30, (64, 64)), 0, 255).astype(np.uint8)
    shifted = np.clip(img.astype(int) + 40, 0, 255).astype(np.uint8)
    m = side_effects(img, shifted, None, 255)
    assert m["affine_share"] < 0.05 and "affine" in violations(m)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert "smoothing" in violations(side_effects(img, blurred, None, 255))
    burnt = np.clip(img.astype(int) * 2, 0, 255).astype(np.uint8)
    assert "saturated" in violations(side_effects(img, burnt, None, 255))
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    assert violations(side_effects(img, noisy, None, 255)) == []
