"""Physics of the rewritten perturbations (issue 12, item 6) and labels of occluded targets (item 7)."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.calibration import calibrate
from medfm_hf.perturbations import get_perturbation
from medfm_hf.perturbations.audit import side_effects
from medfm_hf.perturbations.fov import detect_fov

from .test_fov import _sector, _speckle

N = 128


def _us_frame():
    truth = _sector()
    img = np.where(truth, _speckle((N, N)), 0.0)
    img[4:10, 4:40] = 255  # burned-in text
    img[121, 5:123] = 250  # ECG trace
    return img.astype(np.uint8), truth


@pytest.mark.parametrize("name", ["us_shadowing", "us_reverberation", "us_gain"])
def test_ultrasound_changes_only_the_sector_never_the_overlays(name):
    img, truth = _us_frame()
    p = get_perturbation(name)
    out = p.apply(img, p.max_strength, np.random.default_rng(1))[0]
    fov = detect_fov(img, "ultrasound")
    assert np.array_equal(out[~fov], img[~fov])  # surround, text and ECG trace untouched
    assert not np.array_equal(out[fov], img[fov])


def test_ultrasound_shadow_follows_the_sector_scan_lines():
    img, truth = _us_frame()
    out = get_perturbation("us_shadowing").apply(img, 0.3, np.random.default_rng(1))[0]
    dark = (out.astype(int) < img.astype(int) - 20) & truth
    yy, xx = np.mgrid[:N, :N]
    ang = np.degrees(np.arctan2(xx - 64.0, yy - 2.0))
    # the shadow is a band of angles: at two depths it spans the same angles, not the same columns
    rows_a, rows_b = (yy > 55) & (yy < 65), (yy > 100) & (yy < 110)
    a_lo, a_hi = np.percentile(ang[dark & rows_a], [5, 95])
    b_lo, b_hi = np.percentile(ang[dark & rows_b], [5, 95])
    assert abs(a_lo - b_lo) < 3 and abs(a_hi - b_hi) < 3
    x_a, x_b = np.percentile(xx[dark & rows_a], 95), np.percentile(xx[dark & rows_b], 95)
    assert x_b - x_a > 5  # in columns the band widens with depth (it fans out)


def test_xray_exposure_is_not_brightness():
    from medfm_hf.sources.demo import load_demo

    rec = load_demo(split="test", modalities=["xray"])[0]
    p = get_perturbation("xray_exposure")
    for seed in range(4):  # both directions
        out = p.apply(rec.image, 3.0, np.random.default_rng(seed), fov=rec.fov)[0]
        m = side_effects(rec.image, out, rec.fov, 255)
        assert m["affine_share"] > 0.25  # a global a x + b does not reproduce it
        dense = rec.fov & (rec.image > np.percentile(rec.image[rec.fov], 60))
        # exposure-index normalisation: dense (unsaturated) anatomy keeps its grey level, no global shift
        assert abs(float(out[dense].mean()) - float(rec.image[dense].mean())) < 12


def test_angio_haze_keeps_the_quantum_noise():
    from medfm_hf.sources.demo import load_demo

    rec = load_demo(split="test", modalities=["angiography"])[0]
    res = calibrate(rec.image, "angio_haze", image_id=rec.image_id, levels=(5,), fov=rec.fov)[0]
    assert side_effects(rec.image, res.image, rec.fov, 255)["noise_ratio"] > 0.8


def test_oct_defocus_keeps_speckle_and_dims():
    rng = np.random.default_rng(0)
    h, w = 96, 96
    # a bright band of fully developed speckle on a dark background, in the 40 dB log display
    speck = rng.exponential(1.0, (h, w))
    lin = np.where((np.arange(h)[:, None] > 30) & (np.arange(h)[:, None] < 70), 0.3 * speck, 1e-4)
    x = np.clip(1.0 + 10 * np.log10(np.maximum(lin, 1e-12)) / 40.0, 0, 1)
    img = np.rint(x * 255).astype(np.uint8)
    out = get_perturbation("oct_defocus").apply(img, 2.0, np.random.default_rng(0))[0]
    band = (slice(40, 60), slice(10, 86))
    lin_in = 10 ** (40 * (img[band] / 255.0 - 1) / 10)
    lin_out = 10 ** (40 * (out[band] / 255.0 - 1) / 10)
    assert lin_out.mean() < 0.5 * lin_in.mean()  # dims (confocal loss 1/(1+s^2) = 0.2)
    contrast = lin_out.std() / lin_out.mean()
    assert 0.7 < contrast < 1.3  # speckle stays fully developed (contrast 1), not averaged away


def test_oct_shadow_does_not_darken_the_vitreous():
    from medfm_hf.sources.demo import load_demo

    for rec in load_demo(split="test", modalities=["oct"])[:3]:
        out = get_perturbation("oct_shadow").apply(rec.image, 100.0, np.random.default_rng(0))[0]
        from medfm_hf.perturbations.oct import tissue_surface

        surface = tissue_surface(rec.image.astype(float) / 255)
        rows = np.arange(rec.image.shape[0])[:, None]
        vitreous = rows < (surface[None, :] - 12)
        assert np.abs(out[vitreous].astype(int) - rec.image[vitreous]).mean() < 0.5


def test_oct_motion_moves_whole_pixels():
    img = np.zeros((64, 64), np.uint8)
    img[30:34, :] = 200
    out, _ = get_perturbation("oct_motion").apply(img, 3.0, np.random.default_rng(0), mask=img > 0)
    for c in range(64):
        col = out[:, c]
        assert set(np.unique(col)) <= {0, 200}  # no interpolated grey values
        assert (col == 200).sum() == 4


def test_mri_motion_mask_follows_the_displayed_anatomy():
    from medfm_hf.perturbations.mri import registration_shift

    p = get_perturbation("mri_motion")
    img = np.zeros((96, 96), np.uint8)
    yy, xx = np.mgrid[:96, :96]
    img[(yy - 48) ** 2 / 30**2 + (xx - 48) ** 2 / 22**2 <= 1] = 90  # head
    mask = (yy - 40) ** 2 + (xx - 52) ** 2 <= 7**2
    img[mask] = 220  # bright lesion
    stayed = moved_any = 0
    for seed in range(8):
        out, moved = p.apply(img, 6.0, np.random.default_rng(seed), mask=mask)
        shown = out > 155  # the lesion as displayed
        iou_new = (moved & shown).sum() / (moved | shown).sum()
        iou_old = (mask & shown).sum() / (mask | shown).sum()
        if registration_shift(img, out, 8) == (0, 0):  # the anatomy stayed: so does the mask
            assert np.array_equal(moved, mask)
            stayed += 1
        else:  # it moved: the moved mask covers the displayed lesion at least as well as the old one
            assert moved.sum() == mask.sum()
            assert iou_new >= iou_old
            moved_any += 1
    assert stayed and moved_any  # both cases occur


def test_target_visible_fraction_reports_occluded_targets():
    from medfm_hf.sources.demo import load_demo

    rec = load_demo(split="test", modalities=["endoscopy"])[0]
    res = calibrate(rec.image, "endo_blood", image_id=rec.image_id, mask=rec.mask, fov=rec.fov)
    vis = [r.target_visible_fraction for r in res]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in vis)
    assert vis[-1] <= vis[0]  # more blood, less visible
    # perturbations that hide nothing report the whole target visible; rows without a mask report None
    noise = calibrate(rec.image, "gaussian_noise", image_id=rec.image_id, mask=rec.mask, levels=(3,))[0]
    assert noise.target_visible_fraction == 1.0
    assert calibrate(rec.image, "gaussian_noise", image_id=rec.image_id, levels=(3,))[0].target_visible_fraction is None


def test_ceiling_and_reason_are_reported():
    from medfm_hf.sources.demo import load_demo

    rec = load_demo(split="test", modalities=["pathology"])[0]
    res = calibrate(rec.image, "path_stain", image_id=rec.image_id, fov=rec.fov)
    p = get_perturbation("path_stain")
    assert all(r.strength <= p.max_strength for r in res)
    missed = [r for r in res if not r.in_band]
    assert missed and all(r.reason == "ceiling" for r in missed)
    assert all(r.reason == "" for r in res if r.in_band)
    assert all(np.isfinite(r.ssim_frame) for r in res)
