"""Physics checks of the CT, MRI, X-ray, angiography and OCT artifacts.

Each test checks a property that follows from the physics of the artifact (not from our code's
arithmetic): rings are concentric about the rotation axis, ghosts sit at FOV/N, a bias field is smooth,
quantum noise is worst along long paths, Gibbs overshoot is ~9 %, grids alias into moiré, ...
The generic contract (identity at 0, dtype/shape, determinism, monotone SSIM) is covered by the
registry-wide property tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.fft import dctn
from skimage.transform import radon

from medfm_hf.perturbations import ct, get_perturbation, mri, oct, xray
from medfm_hf.perturbations.registry import to_float

N = 128


def _u16(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _apply(name: str, image: np.ndarray, strength: float, seed: int = 0, **kw) -> np.ndarray:
    return get_perturbation(name).apply(image, strength, np.random.default_rng(seed), **kw)[0]


# ----------------------------------------------------------------------------------------------------
# CT
# ----------------------------------------------------------------------------------------------------


def test_ct_disk_projection_matches_skimage_radon():
    """The analytic metal-disk projection uses the same geometry as skimage's radon (reference)."""
    side, cy, cx, r = 96, -17.0, 23.0, 6.0
    img = _disk((side, side), side // 2 + cy, side // 2 + cx, r).astype(float)
    theta = np.linspace(0.0, 180.0, 60, endpoint=False)
    ref = radon(img, theta, circle=False)
    ours = ct._disk_projection(cy, cx, r, theta, ref.shape[0])
    # same support and the same chord lengths up to the pixelisation of the reference disk
    assert np.corrcoef(ref.ravel(), ours.ravel())[0, 1] > 0.99
    assert abs(ref.sum() - ours.sum()) / ref.sum() < 0.03


def test_ct_forward_projector_matches_skimage_radon():
    """Our vectorised projector against the reference implementation, skimage.transform.radon."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (96, 96))
    theta = np.linspace(0.0, 180.0, 45, endpoint=False)
    ref = radon(img, theta, circle=False)
    ours = ct.forward_project(img[None], theta)[0]
    assert ours.shape == ref.shape
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.02
    assert ours.sum() == pytest.approx(ref.sum(), rel=1e-3)


def test_ct_fbp_round_trip_units():
    """Projecting an HU change and reconstructing it returns it in HU, in place."""
    side = 96
    dhu = np.zeros((side, side))
    dhu[30:40, 55:65] = 500.0
    theta = np.linspace(0.0, 180.0, ct.n_views(side), endpoint=False)
    dp = radon(dhu / 1000.0 * ct.MU_WATER_PER_CM * ct._pixel_cm(side), theta, circle=False)
    back = ct.reconstruct_artifact(dp, theta, (side, side))
    assert abs(back[32:38, 57:63].mean() - 500.0) < 30.0
    assert np.abs(back[70:90, 10:30]).mean() < 20.0


def _radial_r2(a: np.ndarray, cy: float, cx: float, rmax: float = 50.0, bin_width: float = 0.25) -> float:
    """Fraction of the variance of ``a`` (within ``rmax``) explained by its mean profile about (cy, cx)."""
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]]
    r = np.hypot(yy - cy, xx - cx)
    inside = r < rmax
    bins = np.floor(r[inside] / bin_width).astype(int)
    v = a[inside]
    profile = np.bincount(bins, v) / np.maximum(np.bincount(bins), 1)
    return float(1.0 - ((v - profile[bins]) ** 2).sum() / ((v - v.mean()) ** 2).sum())


@pytest.mark.parametrize("seed", range(3))
def test_ct_ring_is_concentric_about_the_rotation_centre(seed):
    img = _u16(np.full((N, N), 0.4))  # flat: the artifact is never clipped
    a = to_float(_apply("ct_ring", img, 0.15, seed=seed)) - to_float(img)
    assert np.abs(a).max() > 0.02
    centre = N // 2  # skimage's rotation axis
    assert _radial_r2(a, centre, centre) > 0.9  # a function of the distance to the axis only
    assert _radial_r2(a, centre + 3, centre) < 0.5  # and not of the distance to another point
    assert _radial_r2(a, centre + 1, centre - 1) < 0.6


def _streak_anisotropy(a: np.ndarray, region: np.ndarray) -> float:
    """Mean squared vertical over horizontal gradient of ``a`` in ``region`` (>1: horizontal streaks)."""
    gy = np.diff(a, axis=0)[:, :-1]
    gx = np.diff(a, axis=1)[:-1, :]
    m = region[:-1, :-1]
    return float((gy[m] ** 2).mean() / (gx[m] ** 2).mean())


def test_ct_photon_starvation_streaks_follow_the_long_dense_paths():
    """Quantum noise is worst on the rays through both dense objects: the streaks run along that axis."""
    yy, xx = np.mgrid[:N, :N]
    wide = ((yy - 64) / 26.0) ** 2 + ((xx - 64) / 58.0) ** 2 <= 1
    x = 0.5 * wide + 0.5 * (_disk((N, N), 64, 26, 7) | _disk((N, N), 64, 102, 7))
    round_body = _disk((N, N), 64, 64, 40)
    for seed in range(2):
        a = to_float(_apply("ct_photon_starvation", _u16(x), 4.0, seed)) - to_float(_u16(x))
        assert _streak_anisotropy(a, wide) > 2.5  # horizontal streaks: long, dense horizontal paths
        b = to_float(_apply("ct_photon_starvation", _u16(0.5 * round_body), 4.0, seed)) - 0.5 * round_body
        assert 0.6 < _streak_anisotropy(b, round_body) < 1.6  # control: a round body has no preferred axis
    # and the noise grows as the dose falls
    a1 = to_float(_apply("ct_photon_starvation", _u16(x), 1.0)) - to_float(_u16(x))
    a4 = to_float(_apply("ct_photon_starvation", _u16(x), 4.0)) - to_float(_u16(x))
    assert a4[wide].std() > 3 * a1[wide].std()


def test_ct_beam_hardening_cups_a_uniform_object():
    x = 0.5 * _disk((N, N), 64, 64, 55)
    img = _u16(x)
    a = to_float(_apply("ct_beam_hardening", img, 0.05)) - to_float(img)
    r = np.hypot(*(np.mgrid[:N, :N] - 64))
    centre, rim = a[r < 10].mean(), a[(r > 40) & (r < 50)].mean()
    assert centre < 0 and centre < rim - 0.005  # darker in the middle: cupping


def test_ct_metal_is_bright_and_streaks_reach_far():
    x = 0.5 * _disk((N, N), 64, 64, 58)
    img = _u16(x)
    wide = {"window": (0.0, 2000.0)}  # 0.5 is water (0 HU); the artifact is seen over -1000..+1000 HU
    weak = to_float(_apply("ct_metal", img, 5.0, seed=1, **wide)) - to_float(img)
    strong = to_float(_apply("ct_metal", img, 30.0, seed=1, **wide)) - to_float(img)
    metal = strong > 0.3
    assert 0 < metal.sum() < 400  # a few small inserts, not a drawn pattern over the image
    far = ~ndi.binary_dilation(metal, iterations=10) & _disk((N, N), 64, 64, 56)
    assert (np.abs(strong[far]) > 0.01).mean() > 0.1  # streaks reach far from the metal
    assert np.abs(strong[far]).mean() > 2 * np.abs(weak[far]).mean()  # and grow with density


# ----------------------------------------------------------------------------------------------------
# MRI
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_mri_ghosts_lie_at_fov_over_n_along_phase_encode(seed):
    x = np.zeros((N, N))
    y0, x0 = 40, 50
    x[y0 : y0 + 5, x0 : x0 + 5] = 0.8
    img = _u16(x)
    period, _, axis = mri.draw_ghost_params(np.random.default_rng(seed))
    out = to_float(_apply("mri_ghosting", img, 1.0, seed))
    # the parent keeps its full intensity (the fluctuation averages to 1 over a period)
    assert out[y0 : y0 + 5, x0 : x0 + 5].mean() == pytest.approx(0.8, abs=0.01)
    step = N // period if N % period == 0 else N / period
    for k in range(1, period):
        dy, dx = (round(k * step), 0) if axis == 0 else (0, round(k * step))
        ghost = out[(y0 + dy) % N : (y0 + dy) % N + 5, (x0 + dx) % N : (x0 + dx) % N + 5]
        # a copy at k FOV/N along the phase-encode axis; the replicas together as bright as the parent
        assert ghost.mean() == pytest.approx(0.8 / (period - 1), rel=0.15)
    # nothing along the other axis
    oy, ox = (0, N // 2) if axis == 0 else (N // 2, 0)
    assert out[(y0 + oy) % N : (y0 + oy) % N + 5, (x0 + ox) % N : (x0 + ox) % N + 5].mean() < 0.02


def test_mri_bias_field_is_smooth():
    img = _u16(np.full((N, N), 0.3))
    out = _apply("mri_bias_field", img, 1.0, seed=5)
    log_field = np.log(out.astype(float) / img.astype(float))
    assert log_field.std() > 0.1
    # DCT (no wrap-around edge): index k is k/2 cycles per field of view
    power = dctn(log_field - log_field.mean(), norm="ortho") ** 2
    k = np.hypot(*np.mgrid[:N, :N])
    assert power[k <= 8].sum() / power.sum() > 0.99  # >99 % of the energy below 4 cycles per FOV


def test_mri_spike_is_a_plane_wave_at_the_spike_frequency():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = _u16(resize(shepp_logan_phantom(), (N, N)))
    positions, _ = mri.draw_spike_positions((N, N), np.random.default_rng(9))
    diff = to_float(_apply("mri_spike", img, 0.2, seed=9)) - to_float(img)
    spec = np.abs(np.fft.fft2(diff))
    spec[0, 0] = 0
    peak = np.unravel_index(np.argmax(spec), spec.shape)
    allowed = {(p % N, q % N) for p, q in positions} | {(-p % N, -q % N) for p, q in positions}
    assert tuple(int(v) for v in peak) in allowed


def test_mri_gibbs_overshoot_is_about_nine_percent():
    x = np.where(np.arange(N) < N // 2, 0.2, 0.8)[None, :].repeat(N, axis=0)
    img = _u16(x)
    # the ratio draw only matters for the other axis; a column step rings along axis 1 either way
    out = to_float(_apply("mri_gibbs", img, 0.75, seed=2))
    overshoot = (out[N // 2, N // 2 : N // 2 + 20].max() - 0.8) / 0.6
    assert 0.05 < overshoot < 0.13
    assert to_float(_apply("mri_gibbs", img, 0.0, seed=2)).max() == pytest.approx(0.8, abs=1e-4)


def test_mri_motion_kspace_matches_a_shift_and_keeps_the_image_in_place():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    x = resize(shepp_logan_phantom(), (N, N))
    shot = mri.kspace_index(N) % 4
    # every shot moved by the same integer shift == the shifted image (reference: np.roll)
    same = mri.motion_kspace(x, shot, np.zeros(4), np.tile([[3.0, -5.0]], (4, 1)), axis=0)
    np.testing.assert_allclose(same, np.roll(x, (3, -5), axis=(0, 1)), atol=1e-9)
    # the registered artifact keeps the object where it was (centroid) while corrupting it
    img = _u16(x)
    out = to_float(_apply("mri_motion", img, 8.0, seed=4))
    yy, xx = np.mgrid[:N, :N]
    c0 = np.array([(yy * x).sum(), (xx * x).sum()]) / x.sum()
    c1 = np.array([(yy * out).sum(), (xx * out).sum()]) / out.sum()
    assert np.abs(c1 - c0).max() < 2.0
    assert np.abs(out - x).mean() > 0.01


# ----------------------------------------------------------------------------------------------------
# X-ray
# ----------------------------------------------------------------------------------------------------


def test_xray_scatter_lowers_contrast_and_keeps_the_noise_level():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:N, :N]
    dense = (yy - 64) ** 2 + (xx - 64) ** 2 <= 20**2
    x = np.clip(np.where(dense, 0.8, 0.3) + 0.03 * rng.standard_normal((N, N)), 0, 1)
    img = _u16(x)
    out = to_float(_apply("xray_scatter", img, 3.0))
    ring = ((yy - 64) ** 2 + (xx - 64) ** 2 > 30**2) & ((yy - 64) ** 2 + (xx - 64) ** 2 <= 45**2)
    c_in = to_float(img)[dense].mean() - to_float(img)[ring].mean()
    c_out = out[dense].mean() - out[ring].mean()
    assert c_out < 0.8 * c_in  # scatter fog lowers the contrast of the dense object

    def detail(v: np.ndarray) -> float:
        return float((v - ndi.gaussian_filter(v, 1)).std())

    # AEC: the same detector dose, so the pixel noise stays (it is not washed out with the contrast)
    assert 0.85 < detail(out) / detail(to_float(img)) < 1.2
    assert out.min() > 0  # renormalised by 1 + SPR: nothing is pushed below black


def test_xray_underexposure_noise_is_worst_behind_dense_anatomy_and_overexposure_burns_out():
    z = np.random.default_rng(1).standard_normal((N, N))
    x = np.where(np.arange(N)[None, :] < N // 2, 0.1, 0.9).repeat(N, axis=0)
    under = xray.exposure_display(x, -3.0, z)
    thin, dense = (under - x)[:, : N // 2], (under - x)[:, N // 2 :]
    assert dense.std() > 3 * thin.std()  # relative quantum noise ~ 1/sqrt(counts)
    assert abs(under.mean() - x.mean()) < 0.01  # exposure-index normalisation: no grey-level shift
    over = np.clip(xray.exposure_display(x, 3.0, z), 0, 1)
    assert np.all(over[:, : N // 2] == 0)  # thin regions saturate the detector: burnt out to black
    np.testing.assert_allclose(over[:, N // 2 :], x[:, N // 2 :], atol=1e-12)  # dense ones keep their level


@pytest.mark.parametrize(("frequency", "expected"), [(0.3, 0.3), (0.7, 0.3), (0.45, 0.45)])
def test_xray_grid_aliases_into_moire(frequency, expected):
    t = xray.grid_transmission((256, 16), frequency, 0.25, 0.1, 0.0, 2.0)
    profile = t[:, 0] - t[:, 0].mean()
    spec = np.abs(np.fft.rfft(profile))
    peak = np.argmax(spec) / 256.0
    assert peak == pytest.approx(expected, abs=2 / 256)


# ----------------------------------------------------------------------------------------------------
# angiography
# ----------------------------------------------------------------------------------------------------


def test_angio_haze_lifts_dark_vessels_relative_to_background():
    x = np.full((N, N), 0.4)
    x[:, 60:66] = 0.1  # a contrast-filled vessel
    img = _u16(x)
    out = to_float(_apply("angio_haze", img, 0.3))
    before = (0.4 - 0.1) / 0.4
    after = (out[:, 20:40].mean() - out[:, 61:65].mean()) / out[:, 20:40].mean()
    assert after < 0.85 * before  # relative vessel contrast reduced by the veil


def test_angio_motion_blurs_without_displacing():
    x = np.zeros((N, N))
    x[60:64, 60:64] = 1.0
    img = _u16(x)
    yy, xx = np.mgrid[:N, :N]

    def moments(v: np.ndarray) -> tuple[np.ndarray, float]:
        c = np.array([(yy * v).sum(), (xx * v).sum()]) / v.sum()
        spread = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) * v
        return c, float(np.sqrt(spread.sum() / v.sum()))

    c0, s0 = moments(x)
    c1, s1 = moments(to_float(_apply("angio_motion", img, 10.0)))
    c2, s2 = moments(to_float(_apply("angio_motion", img, 20.0)))
    assert np.abs(c1 - c0).max() < 0.5 and np.abs(c2 - c0).max() < 0.5  # zero-mean path
    assert s0 < s1 < s2  # the smear grows with the excursion


# ----------------------------------------------------------------------------------------------------
# OCT
# ----------------------------------------------------------------------------------------------------


def _bscan(rng: np.random.Generator, h: int = N, w: int = N) -> np.ndarray:
    """A layered synthetic B-scan: dark vitreous, bright wavy retina, speckle."""
    rows = np.arange(h)[:, None]
    top = 40 + 6 * np.sin(np.arange(w) / 15.0)[None, :]
    retina = (rows >= top) & (rows < top + 45)
    x = np.where(retina, 0.75, 0.15) + np.where((rows >= top + 15) & (rows < top + 22), 0.15, 0.0)
    return np.clip(x + 0.05 * rng.standard_normal((h, w)), 0, 1)


def test_oct_shadow_darkens_only_below_the_absorber():
    x = _bscan(np.random.default_rng(0))
    img = _u16(x)
    out = to_float(_apply("oct_shadow", img, 20.0, seed=3))
    d = out - to_float(img)
    assert np.all(d <= 1e-6)  # attenuation only removes light
    cols = np.flatnonzero((d < -0.05).sum(axis=0) > 10)
    assert 0 < cols.size < N  # vertical bands, not the whole scan
    # the vitreous above the retina is already at the noise floor: only tissue signal is removed
    assert np.abs(d[:28, cols]).mean() < 0.3 * np.abs(d[60:85, cols]).mean()


def test_oct_shadow_of_a_denser_opacity_is_deeper_and_wider():
    """Beer-Lambert through a diffuse opacity: more density darkens the same A-scans more and, once the
    core is at the noise floor, extends the fully shadowed band into the haze (never the whole scan at
    once, never brighter)."""
    img = _u16(_bscan(np.random.default_rng(0)))
    retina = slice(60, 85)
    x = to_float(img)
    drops = []
    for s in (10.0, 40.0, 400.0):
        d = to_float(_apply("oct_shadow", img, s, seed=3)) - x
        assert np.all(d <= 1e-6)
        drops.append(-d[retina].mean(axis=0))  # per-A-scan signal loss in the retina
    assert np.all(drops[1] >= drops[0] - 1e-6) and np.all(drops[2] >= drops[1] - 1e-6)
    dark = [int((v > 0.5 * drops[2].max()).sum()) for v in drops]
    assert dark[0] < dark[1] < dark[2] < N  # the strongly shadowed band widens, but A-scans stay lit


def test_oct_blink_loses_the_expected_fraction_of_ascans():
    img = _u16(_bscan(np.random.default_rng(1)))
    for s in (0.2, 0.5):
        out = to_float(_apply("oct_blink", img, s, seed=2))
        changed = np.abs(out - to_float(img)).max(axis=0) > 0.1
        assert abs(changed.sum() - s * N) <= 3
        runs = np.flatnonzero(np.diff(changed.astype(int)) != 0).size
        assert runs <= 4  # 1-2 contiguous bands of lost A-scans


def test_oct_defocus_blurs_laterally_and_loses_signal():
    x = _bscan(np.random.default_rng(2))
    img = _u16(x)
    out = to_float(_apply("oct_defocus", img, 1.5, seed=1))
    lat = lambda v: np.abs(np.diff(v, axis=1)).mean()  # noqa: E731
    ax = lambda v: np.abs(np.diff(v, axis=0)).mean()  # noqa: E731
    assert lat(out) / lat(x) < ax(out) / ax(x)  # lateral resolution lost first
    assert out[50:80].mean() < x[50:80].mean() - 0.02  # dimmer retina (confocal loss)


def test_oct_motion_moves_the_mask_with_the_ascans():
    x = _bscan(np.random.default_rng(3))
    img = _u16(x)
    mask = ndi.gaussian_filter(x, 1.5) > 0.45
    p = get_perturbation("oct_motion")
    out, moved = p.apply(img, 6.0, np.random.default_rng(4), mask=mask)
    remask = ndi.gaussian_filter(to_float(out), 1.5) > 0.45
    iou = (moved & remask).sum() / (moved | remask).sum()
    assert iou > 0.95
    # displacement is axial only: every column keeps its mask area (up to the edges)
    assert np.abs(moved.sum(axis=0) - mask.sum(axis=0)).max() <= 1
    assert (moved != mask).any()


def test_oct_speckle_has_fully_developed_statistics():
    s = oct.speckle_field((256, 256), (1.0, 1.0), np.random.default_rng(0))
    assert s.mean() == pytest.approx(1.0, abs=1e-9)
    assert s.std() / s.mean() == pytest.approx(1.0, abs=0.1)  # speckle contrast 1
    db = 10 * np.log10(s)
    assert db.std() == pytest.approx(5.57, abs=0.4)  # the log-exponential standard deviation


def test_every_family_module_registers_its_names():
    expected = {
        "ct": ["ct_metal", "ct_beam_hardening", "ct_photon_starvation", "ct_ring"],
        "mri": ["mri_bias_field", "mri_ghosting", "mri_motion", "mri_spike", "mri_gibbs"],
        "xray": ["xray_scatter", "xray_exposure", "xray_grid"],
        "angiography": ["angio_haze", "angio_motion"],
        "oct": ["oct_shadow", "oct_blink", "oct_defocus", "oct_motion", "oct_speckle"],
    }
    for modality, names in expected.items():
        for name in names:
            p = get_perturbation(name)
            assert p.modalities == (modality,) and p.family == modality
            assert p.geometric == (name == "oct_motion")


MY_NAMES = [
    "ct_metal", "ct_beam_hardening", "ct_photon_starvation", "ct_ring",
    "mri_bias_field", "mri_ghosting", "mri_motion", "mri_spike", "mri_gibbs",
    "xray_scatter", "xray_exposure", "xray_grid", "angio_haze", "angio_motion",
    "oct_shadow", "oct_blink", "oct_defocus", "oct_motion", "oct_speckle",
]


def test_calibration_reaches_the_mild_levels_on_a_demo_image_of_each_modality():
    """Regression guard on the strength ranges: levels 1-2 are found (or lie beyond the physical
    ceiling), cheaply, on real demo images.

    (The full in-band rates over all levels are measured on the whole demo test set and reported in
    docs/physics_ct_mri_xray_oct.md; some upper levels are physically out of reach there.)
    """
    from medfm_hf.calibration import calibrate
    from medfm_hf.sources.demo import load_demo

    first = {}
    for r in load_demo(split="test", modalities=["ct", "mri", "xray", "angiography", "oct"]):
        first.setdefault(r.modality, r)
    evaluations = 0
    for name in MY_NAMES:
        p = get_perturbation(name)
        rec = first[p.modalities[0]]
        results = calibrate(np.asarray(rec.image), name, image_id=rec.image_id, levels=(1, 2), mask=rec.mask)
        # a band beyond the physical ceiling is reported as such (e.g. mri_gibbs: no clinical matrix
        # under 64 lines), never missed for another reason
        assert all(res.in_band or res.reason == "ceiling" for res in results), (
            name, [(res.strength, res.ssim, res.reason) for res in results])
        evaluations += sum(res.evaluations for res in results)
    assert evaluations / (2 * len(MY_NAMES)) <= 5


def test_angio_glare_psf_matches_scipy_gaussian_reference():
    """The Fourier-domain glare blur equals scipy's spatial Gaussian filters (reflect edges)."""
    from medfm_hf.perturbations import angiography

    x = np.random.default_rng(0).random((64, 64))
    ours = angiography.glare_psf_blur(x, 3.0, 4.0, 0.4)
    tail = sum(ndi.gaussian_filter(x, 4.0 * m, mode="reflect") for m in (1.0, 2.0, 4.0)) / 3.0
    ref = 0.6 * ndi.gaussian_filter(x, 3.0, mode="reflect") + 0.4 * tail
    np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("name", ["ct_ring", "ct_metal", "mri_spike", "xray_grid", "oct_shadow", "angio_motion"])
def test_grey_as_rgb_gives_the_grey_result_in_every_channel(name):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    grey = _u16(resize(shepp_logan_phantom(), (64, 64)))
    p = get_perturbation(name)
    strength = 0.3 * p.strength_range[1]
    g = p(grey, strength, np.random.default_rng(7))
    rgb = p(np.stack([grey] * 3, axis=2), strength, np.random.default_rng(7))
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], g)
