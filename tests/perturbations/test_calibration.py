"""Per-image calibration to the SSIM bands."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medfm_hf import calibration
from medfm_hf.calibration import BANDS, band_of, calibrate, derive_seed, in_band
from medfm_hf.perturbations import get_perturbation
from medfm_hf.ssim import SSIMReference, ssim

from .conftest import demo_test_records, grey_image, rgb_image

BASE = ["gaussian_noise", "salt_pepper", "speckle_noise", "gaussian_blur", "motion_blur", "defocus_blur",
        "jpeg", "pixelate", "contrast", "brightness", "saturation", "rotate", "scale", "translate"]


def test_derive_seed_is_stable_and_distinct():
    # a golden value: the seed must not change between machines, runs or Python versions
    assert derive_seed(0, "demo/ct_00", "gaussian_noise") == derive_seed(0, "demo/ct_00", "gaussian_noise")
    assert derive_seed(0, "demo/ct_00", "gaussian_noise") == 5766426306242251973
    seeds = {derive_seed(s, i, n) for s in (0, 1) for i in ("a", "b") for n in ("jpeg", "rotate")}
    assert len(seeds) == 8
    assert all(0 <= s < 2**63 for s in seeds)


def test_bands_and_helpers():
    assert [BANDS[lv] for lv in range(1, 6)] == [(0.90, 0.98), (0.80, 0.90), (0.70, 0.80), (0.60, 0.70),
                                                 (0.50, 0.60)]
    assert in_band(0.95, 1) and not in_band(0.99, 1) and not in_band(0.45, 5)
    assert band_of(0.75) == 3 and band_of(0.2) is None


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur", "rotate"])
def test_deterministic_and_reproducible(name):
    img = rgb_image()
    mask = img[..., 0] > 120
    first = calibrate(img, name, image_id="t/ihc", seed=3, mask=mask)
    second = calibrate(img, name, image_id="t/ihc", seed=3, mask=mask)
    assert [(r.strength, r.ssim) for r in first] == [(r.strength, r.ssim) for r in second]
    other = calibrate(img, name, image_id="t/ihc", seed=4, mask=mask)
    assert {r.seed for r in other} != {r.seed for r in first}
    p = get_perturbation(name)
    for r in first:
        assert r.seed == derive_seed(3, "t/ihc", name)
        # the stored image is exactly the perturbation at that strength with a fresh generator
        out, moved = p.apply(img, r.strength, np.random.default_rng(r.seed), mask=mask)
        assert np.array_equal(out, r.image)
        assert np.array_equal(moved, r.mask)
        assert r.ssim == pytest.approx(ssim(img, r.image), abs=1e-12)  # measured on the quantised output
        assert r.image.dtype == img.dtype and r.image.shape == img.shape


def test_all_levels_from_one_search(monkeypatch):
    calls = []
    original = SSIMReference.score_both

    def counting(self, cand):
        calls.append(1)
        return original(self, cand)

    monkeypatch.setattr(SSIMReference, "score_both", counting)
    img = grey_image()
    results = calibrate(img, "gaussian_blur", image_id="t/camera", seed=0)
    assert [r.level for r in results] == [1, 2, 3, 4, 5]
    assert all(r.in_band for r in results), [(r.level, r.ssim) for r in results]
    assert sum(r.evaluations for r in results) == len(calls)  # every evaluation charged to one level
    assert len(calls) <= 25
    strengths = [r.strength for r in results]
    assert strengths == sorted(strengths) and len(set(strengths)) == 5
    assert len({r.seed for r in results}) == 1


def test_level_subset():
    img = grey_image()
    only = calibrate(img, "gaussian_noise", image_id="t/camera", levels=(4, 2))
    assert [r.level for r in only] == [2, 4]
    assert all(r.in_band for r in only)


def test_unreachable_band_is_reported_not_duplicated(caplog):
    # A very smooth image: even at contrast's physical ceiling (10 % of the contrast left) SSIM stays high.
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.clip(100 + 0.2 * xx + 0.1 * yy + 6 * np.sin(xx / 5.0), 0, 255).astype(np.uint8)
    with caplog.at_level(logging.WARNING, logger="medfm_hf.calibration"):
        results = calibrate(img, "contrast", image_id="t/smooth")
    by_level = {r.level: r for r in results}
    missed = [r for r in results if not r.in_band]
    assert missed, [(r.level, r.ssim) for r in results]
    p = get_perturbation("contrast")
    top = p.max_strength
    assert top < p.strength_range[1]  # the ceiling, not the range's top, bounds the search
    for r in missed:
        assert r.strength == top  # the closest the ceiling allows
        assert r.ssim > BANDS[r.level][1]
        assert r.reason == "ceiling"
        assert f"level {r.level} band" in caplog.text
    assert by_level[1].in_band
    # levels sharing a strength are never all marked in band
    strengths = [r.strength for r in results]
    for s in set(strengths):
        same = [r for r in results if r.strength == s]
        assert sum(r.in_band for r in same) <= 1


def test_geometric_calibration_moves_mask_and_bbox():
    img = grey_image()
    mask = np.zeros(img.shape, bool)
    mask[20:40, 30:55] = True
    results = calibrate(img, "translate", image_id="t/camera", mask=mask)
    for r in results:
        assert r.mask is not None and r.mask.shape == mask.shape
        if r.mask.any():
            ys, xs = np.nonzero(r.mask)
            assert r.bbox == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        else:
            assert r.bbox is None
    assert not np.array_equal(results[-1].mask, mask)
    assert mask[20:40, 30:55].all() and mask.sum() == 500  # input mask untouched


def test_constant_image_is_refused_with_a_clear_message():
    with pytest.raises(calibration.PerturbationError, match="constant"):
        calibrate(np.full((32, 32), 7, np.uint8), "gaussian_noise", image_id="t/flat")


@pytest.mark.parametrize(
    ("image", "name", "kwargs", "match"),
    [
        (np.full((32, 32), np.nan), "gaussian_noise", {}, "NaN"),
        (np.zeros((1, 1), np.uint8), "gaussian_noise", {}, "too small"),
        (np.zeros((32, 32, 4), np.uint8), "gaussian_noise", {}, "RGBA"),
        (None, "no_such_perturbation", {}, "unknown perturbation"),
        (None, "saturation", {}, "colour"),
        (None, "gaussian_noise", {"levels": (0, 6)}, "levels are 1-5"),
        (None, "gaussian_noise", {"mask": np.zeros((3, 3), bool)}, "mask shape"),
    ],
)
def test_bad_calibration_input(image, name, kwargs, match):
    img = grey_image() if image is None else image
    with pytest.raises(calibration.PerturbationError, match=match):
        calibrate(img, name, image_id="t/bad", **kwargs)


def _subset(per_modality: int = 3):
    seen: dict[str, int] = {}
    for rec in demo_test_records():
        seen[rec.modality] = seen.get(rec.modality, 0) + 1
        if seen[rec.modality] <= per_modality:
            yield rec


def test_demo_acceptance_for_base_perturbations():
    """The calibrator on half the demo test set (3 images per modality) and all 14 base perturbations.

    The full measurement (all test images, 256 and 512 px) is ``benchmarks/perturbation_bench.py``.

    Asserted: <= 5 SSIM evaluations per (image, perturbation, level) on average, and >= 95 % of the
    cells in band among those whose band the perturbation can reach (the SSIM at its physical ceiling,
    ``max_strength``, is at or below the band's upper edge). The raw rate over all cells is reported in
    docs/perturbation_benchmark.md; on very smooth demo images some bands are physically out of reach.
    """
    cells = reachable = hits_reachable = hits = evaluations = 0
    for rec in _subset():
        for name in BASE:
            p = get_perturbation(name)
            if not p.applies_to(rec.modality, rec.image):
                continue
            results = calibrate(rec.image, name, image_id=rec.image_id, mask=rec.mask)
            top = p.apply(rec.image, p.max_strength,
                          np.random.default_rng(derive_seed(0, rec.image_id, name)))[0]
            ssim_top = ssim(rec.image, top)
            for r in results:
                cells += 1
                hits += r.in_band
                evaluations += r.evaluations
                if ssim_top <= BANDS[r.level][1]:
                    reachable += 1
                    hits_reachable += r.in_band
    assert cells >= 30 * 13 * 5
    assert evaluations / cells <= 5.0
    assert hits_reachable / reachable >= 0.95, (hits_reachable, reachable)
    assert hits / cells >= 0.85, hits / cells  # regression guard on the raw rate (see the docstring)
