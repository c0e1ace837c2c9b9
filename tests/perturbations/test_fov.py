"""Field-of-view detectors on constructed frames with known geometry, and the FOV-masked SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfm_hf.perturbations.fov import detect_fov, overlay_mask, scan_geometry
from medfm_hf.records import Record, decode_png
from medfm_hf.ssim import SSIMReference, ssim

N = 128


def _speckle(shape, seed=0, mean=110.0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.gamma(4.0, mean / 4.0, shape), 0, 240)


def _sector(n=N, apex=(64.0, 2.0), half_angle=30.0, r_in=15.0, r_out=115.0):
    yy, xx = np.mgrid[:n, :n].astype(float)
    ang = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
    r = np.hypot(xx - apex[0], yy - apex[1])
    return (np.abs(ang) <= half_angle) & (r >= r_in) & (r <= r_out)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_ultrasound_sector_with_text_and_ecg_overlays():
    truth = _sector()
    img = np.where(truth, _speckle((N, N)), 0.0)
    img[4:10, 4:40] = 255  # burned-in text (saturated)
    img[120:123, :] = 0
    img[121, 5:123] = 250  # ECG trace below the sector
    img = img.astype(np.uint8)
    fov = detect_fov(img, "ultrasound")
    assert _iou(fov, truth) > 0.9
    assert not fov[4:10, 4:40].any() and not fov[121, :].any()
    geo = scan_geometry(fov)
    assert geo.kind == "sector"
    assert abs(geo.apex[0] - 64) < 4 and abs(geo.apex[1] - 2) < 8
    assert abs(math.degrees(geo.angles[1]) - 30) < 4 and abs(math.degrees(geo.angles[0]) + 30) < 4


def test_ultrasound_dual_panel_keeps_both_panels_not_the_gap():
    img = np.zeros((N, N), np.uint8)
    left, right = np.zeros((N, N), bool), np.zeros((N, N), bool)
    left[20:110, 6:60] = True
    right[20:110, 68:122] = True
    img[left | right] = _speckle((N, N))[left | right].astype(np.uint8)
    fov = detect_fov(img, "ultrasound")
    assert _iou(fov, left | right) > 0.85
    assert not fov[:, 62:66].any()  # the gap between the panels
    assert scan_geometry(fov).kind == "linear"


def test_ultrasound_colour_overlay_is_excluded():
    grey = np.where(_sector(), _speckle((N, N)), 0.0).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[60:70, 60:70] = (220, 40, 40)  # a colour marker inside the sector
    assert overlay_mask(rgb)[65, 65]
    assert not detect_fov(rgb, "ultrasound")[65, 65]


def test_xray_collimation_is_cut_off():
    img = np.full((N, N), 255, np.uint8)  # collimator blades: flat white bands
    field = np.zeros((N, N), bool)
    field[14:110, 20:100] = True
    img[field] = np.clip(_speckle((N, N), 1, 120), 0, 240).astype(np.uint8)[field]
    fov = detect_fov(img, "xray")
    assert _iou(fov, field) > 0.9
    # a frame without collimation is all field
    assert detect_fov(_speckle((N, N)).astype(np.uint8), "xray").all()


@pytest.mark.parametrize("modality", ["ct", "mri"])
def test_body_is_the_largest_component_with_holes_filled(modality):
    yy, xx = np.mgrid[:N, :N]
    body = (yy - 64) ** 2 / 50**2 + (xx - 64) ** 2 / 40**2 <= 1
    img = np.where(body, 120, 0).astype(np.uint8)
    img[(yy - 64) ** 2 + (xx - 64) ** 2 <= 10**2] = 0  # dark (air/fluid) inside the body
    img[2:6, 2:6] = 200  # a small bright blob outside (table marker)
    fov = detect_fov(img, modality)
    assert _iou(fov, body) > 0.95
    assert fov[64, 64] and not fov[3, 3]


@pytest.mark.parametrize("modality", ["fundus", "endoscopy", "dermoscopy"])
def test_circular_aperture(modality):
    yy, xx = np.mgrid[:N, :N]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 <= 55**2
    img = np.zeros((N, N, 3), np.uint8)
    img[disc] = (170, 90, 60)
    img[disc & (xx < 64)] = (30, 20, 15)  # a dark region inside the aperture stays inside
    fov = detect_fov(img, modality)
    assert _iou(fov, disc) > 0.95


def test_pathology_tissue_not_glass():
    img = np.full((N, N, 3), 242, np.uint8)  # glass
    tissue = np.zeros((N, N), bool)
    tissue[20:100, 10:80] = True
    img[tissue] = (190, 120, 170)  # H&E pink-purple
    fov = detect_fov(img, "pathology")
    assert _iou(fov, tissue) > 0.9
    assert detect_fov(img, "oct").all() and detect_fov(img, "angiography").all()


def test_record_carries_fov_through_a_row():
    img = np.zeros((64, 64), np.uint8)
    img[16:48, 12:52] = 120
    rec = Record(image_id="t/a", source="t", modality="ct", task="classification", image=img, split="test")
    row = rec.to_row()
    fov = decode_png(row["fov"]["bytes"]) > 127
    assert fov[32, 32] and not fov[2, 2]
    supplied = np.zeros((64, 64), bool)
    supplied[:, :10] = True
    rec2 = Record(image_id="t/b", source="t", modality="ct", task="classification", image=img, split="test",
                  fov=supplied)
    assert np.array_equal(decode_png(rec2.to_row()["fov"]["bytes"]) > 127, supplied)


def test_fov_ssim_is_the_map_mean_over_windows_inside_the_fov():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 40), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    fov = np.zeros(a.shape, bool)
    fov[5:40, 8:30] = True
    _, smap = structural_similarity(a, b, data_range=255, full=True)
    inside = np.zeros(a.shape, bool)
    inside[8:37, 11:27] = True  # windows (7x7) fully inside the FOV: centres eroded by 3 px
    ref = SSIMReference(a, 255, fov)
    fov_v, frame_v = ref.score_both(b)
    assert fov_v == pytest.approx(smap[inside].mean(), abs=1e-9)
    assert frame_v == pytest.approx(structural_similarity(a, b, data_range=255), abs=1e-9)
    assert ssim(a, b, fov=fov) == pytest.approx(fov_v, abs=1e-12)
    # an FOV too small for one window falls back to the whole frame
    tiny = np.zeros(a.shape, bool)
    tiny[0:3, 0:3] = True
    assert SSIMReference(a, 255, tiny).score(b) == pytest.approx(frame_v, abs=1e-12)


def test_folder_source_passes_a_supplied_fov_through(tmp_path):
    import cv2

    from medfm_hf.sources.base import SourceReport
    from medfm_hf.sources.folder import load_folder

    for d in ("images", "masks", "fovs"):
        (tmp_path / d).mkdir()
    img = np.zeros((32, 32), np.uint8)
    img[8:24, 8:24] = 120
    mask = np.zeros((32, 32), np.uint8)
    mask[10:14, 10:14] = 255
    fov = np.zeros((32, 32), np.uint8)
    fov[:, :20] = 255
    for stem in ("a", "b"):
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.png"), img)
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), mask)
    cv2.imwrite(str(tmp_path / "fovs" / "a.png"), fov)
    recs = {r.image_id: r for r in load_folder(str(tmp_path), report=SourceReport("folder"), modality="ct",
                                               fov="fovs")}
    assert np.array_equal(recs["folder/a"].fov, fov > 0) and recs["folder/a"].meta["fov"] == "supplied"
    assert recs["folder/b"].fov is None and recs["folder/b"].meta["fov"] == "detected"
    assert recs["folder/b"].field_of_view()[16, 16]
