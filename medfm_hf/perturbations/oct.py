"""Optical coherence tomography (OCT) B-scan artifacts.

Geometry: rows are depth (the axial direction, :math:`z`, light coming from the top) and columns are
A-scans (the lateral scan direction). The displayed value is the log-compressed backscattered
intensity over a dynamic range of :math:`D = 40` dB: :math:`x = 1 + 10 \\log_{10}(I)/D`, i.e.
:math:`I = 10^{D (x - 1)/10}` relative to the brightest pixel value. Attenuation, speckle and signal
loss act on :math:`I` (or additively in dB) and the result is mapped back and clipped. The noise floor
:math:`N_f` (the 5th percentile of :math:`I`, i.e. the vitreous/background level) is what a lost
signal falls to. Colour inputs are processed channel by channel with the same draws.

References: Drexler & Fujimoto (eds.), *Optical Coherence Tomography*, 2nd ed., Springer 2015;
Chhablani, Krishnan & Sethi, "Artifacts in optical coherence tomography", Saudi J. Ophthalmol. 28
(2014) 81-87; Schmitt, Xiang & Yung, "Speckle in optical coherence tomography", J. Biomed. Opt. 4
(1999) 95-105.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

DYNAMIC_RANGE_DB = 40.0
FLOOR_PERCENTILE = 5.0


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a float ``(H, W) -> (H, W)`` function to a grey image or to every channel of an RGB one."""
    x = to_float(image)
    out = fn(x) if x.ndim == 2 else np.stack([fn(x[..., c]) for c in range(x.shape[2])], axis=2)
    return from_float(out, image.dtype)


def to_linear(x: np.ndarray) -> np.ndarray:
    """Display value -> linear intensity relative to full scale."""
    return 10.0 ** (DYNAMIC_RANGE_DB * (x - 1.0) / 10.0)


def to_display(intensity: np.ndarray) -> np.ndarray:
    """Linear intensity -> display value (unclipped)."""
    return 1.0 + 10.0 * np.log10(np.clip(intensity, 1e-12, None)) / DYNAMIC_RANGE_DB


def noise_floor(intensity: np.ndarray) -> float:
    """Noise-floor intensity of a B-scan (a low percentile of its linear intensities)."""
    return float(np.percentile(intensity, FLOOR_PERCENTILE))


def _smooth_top_hat(coord: np.ndarray, centre: float, half_width: float, edge: float) -> np.ndarray:
    """1 inside ``|coord - centre| < half_width``, falling to 0 over ``edge`` pixels (logistic)."""
    return 1.0 / (1.0 + np.exp((np.abs(coord - centre) - half_width) / max(edge, 1e-6)))


def tissue_surface(x: np.ndarray, smooth: float = 2.0) -> np.ndarray:
    """Depth (row) of the first tissue interface per A-scan: the first row above the column's mid-level."""
    g = ndi.gaussian_filter(x, smooth)
    lo = np.percentile(g, 10, axis=0)
    hi = g.max(axis=0)
    above = g >= (lo + 0.5 * (hi - lo))[None, :]
    first = np.argmax(above, axis=0)
    return np.where(above.any(axis=0), first, 0).astype(np.float64)


# ----------------------------------------------------------------------------------------------------
# shadow
# ----------------------------------------------------------------------------------------------------


def shadow_profile(
    x: np.ndarray,
    centres: np.ndarray,
    half_widths: np.ndarray,
    starts: np.ndarray,
    hazes: np.ndarray | None = None,
) -> np.ndarray:
    """Relative optical depth in [0, 1] per pixel: lateral profiles starting at a depth per absorber.

    ``starts[i]`` is the depth below the first tissue interface where absorber ``i``'s shadow begins
    (``-inf`` for an absorber in the vitreous or the media, which shadows the whole A-scan).
    ``hazes[i]`` is the lateral decay length (pixels) of a diffuse absorber's density outside its core,
    :math:`e^{-d/\\ell}` at distance :math:`d` from the core's edge; ``0`` gives a compact absorber
    (soft 1.5 px edge).
    """
    h, w = x.shape
    cols = np.arange(w, dtype=np.float64)
    rows = np.arange(h, dtype=np.float64)[:, None]
    surface = tissue_surface(x)
    profile = np.zeros((h, w))
    if hazes is None:
        hazes = np.zeros(len(centres))
    for c, hw, d, ell in zip(centres, half_widths, starts, hazes):
        if ell > 0:
            lateral = np.exp(-np.maximum(np.abs(cols - c) - hw, 0.0) / ell)[None, :]
        else:
            lateral = _smooth_top_hat(cols, c, hw, 1.5)[None, :]
        if np.isfinite(d):
            axial = 1.0 / (1.0 + np.exp(-(rows - (surface[None, :] + d)) / 1.5))
        else:
            axial = np.ones((h, 1))
        profile = np.maximum(profile, lateral * axial)
    return profile


@register_perturbation(
    "oct_shadow",
    modalities=("oct",),
    strength_range=(0.0, 400.0),
    description="A-scan shadowing below absorbers (diffuse vitreous opacity / haemorrhage, retinal vessels)",
    ceiling=400.0,
    ceiling_note="round trip <= 400 dB at the core (the range top): 46 nepers, 2 mu L with whole blood's attenuation "
    "of ~60-80 /mm in the near infrared (Bosschaart et al. 2014) -- a preretinal or subhyaloid haemorrhage "
    "~0.3 mm thick, common in proliferative retinopathy, under which OCT shows a complete shadow; its dispersed "
    "blood (the haze) shades the A-scans beside it",
    side_effects=("smoothing",), side_effect_note="the shadow attenuates the signal below a vessel, and its speckle with it",
)
def oct_shadow(
    image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None
) -> np.ndarray:
    """Shadowing: signal loss in the A-scans beneath an absorbing or scattering structure.

    Physics: light reaching a depth :math:`z` has passed everything above it twice; a vitreous floater,
    a media opacity or dispersed vitreous blood in the beam, or a retinal blood vessel, attenuates it
    (Beer-Lambert, :math:`e^{-2\\mu_t \\ell}`), so every structure below appears dark in those A-scans --
    a vertical shadow band starting at the absorber (Chhablani et al. 2014; Drexler & Fujimoto 2015,
    ch. 2). A diffuse opacity (vitreous haemorrhage, dense vitreous haze) has a dense core and a
    concentration that thins out laterally, so its round-trip attenuation falls off with the distance
    from the core and its shadow is graded.

    Model: one vitreous opacity with a core of width :math:`U(0.15, 0.4) W` and a diffuse haze around
    it whose optical depth decays as :math:`e^{-d/\\ell}` with the distance :math:`d` from the core,
    :math:`\\ell \\sim U(0.08, 0.2) W`, floating :math:`U(3, 10)` pixels above the first tissue interface
    and shadowing the A-scans from there down (the vitreous above it is not darkened: tested); plus 0-2 retinal vessels, width
    :math:`U(0.02, 0.05) W`, whose shadows start :math:`U(2, 12)` pixels below the first tissue interface;
    centres :math:`\\sim U(0, W)`, soft lateral edges (all drawn from ``rng``). In the shadow the signal
    above the noise floor is attenuated by :math:`s\\,a` dB, :math:`I' = (I - N_f) 10^{-s a(z, c)/10} +
    N_f`, :math:`a \\in [0, 1]` the relative optical depth (1 in the core and under the vessels).
    ``strength`` :math:`s` is the round-trip attenuation in dB at the opacity's core (its density):
    the same draws at every strength, a denser opacity shadows deeper and wider.

    Severity: the shadow bottoms out at the noise floor (~30-40 dB), so beyond that a denser opacity
    no longer darkens the core's A-scans but extends the fully shadowed band into its haze, by about
    :math:`\\ell \\ln(s / 35\\,\\mathrm{dB})` on each side. On the demo B-scans (256 px, FOV SSIM, seed 0)
    level 5 is reached on 5 of 6, at :math:`s \\approx 56-100` dB on four and at the top of the range on one;
    the sixth has a narrow-haze opacity at the edge of the scan (half of it outside the frame), needs 400 dB
    for level 4 and does not reach level 5 (``reason = "saturated"``). Before this haze model (a compact opacity of fixed
    width, 0-40 dB) SSIM stopped at 0.61-0.83 and level 5 was never reached (measured rates in
    ``docs/physics_ct_mri_xray_oct.md``).

    Ceiling: 400 dB round trip at the core (the range top): 46 nepers, :math:`2\\mu L` with whole blood's
    attenuation of ~60-80 /mm in the near infrared (Bosschaart et al., "A literature review and novel
    theoretical approach on the optical properties of whole blood", Lasers Med. Sci. 29 (2014) 453) -- a
    preretinal or subhyaloid haemorrhage ~0.3 mm thick, common in proliferative retinopathy, under which OCT
    shows a complete shadow; its dispersed blood (the haze) shades the A-scans beside it.
    """
    w = image.shape[1]
    n_vessels = int(rng.integers(0, 3))
    centres = rng.uniform(0, w, size=1 + n_vessels)
    half_widths = np.concatenate([rng.uniform(0.075, 0.2, size=1), rng.uniform(0.01, 0.025, size=n_vessels)]) * w
    # the opacity floats in the vitreous a few pixels above the retina: only what lies below it is shadowed
    starts = np.concatenate([-rng.uniform(3.0, 10.0, size=1), rng.uniform(2.0, 12.0, size=n_vessels)])
    hazes = np.concatenate([rng.uniform(0.08, 0.2, size=1) * w, np.zeros(n_vessels)])

    def fn(x: np.ndarray) -> np.ndarray:
        profile = shadow_profile(x, centres, half_widths, starts, hazes)
        lin = to_linear(x)
        floor = noise_floor(lin)
        # only the signal above the noise floor is attenuated; readings below it are noise and stay
        if occlusion is not None and not occlusion:  # signal lost: 3 dB (half the intensity) = opacity 0.5
            occlusion.append(1.0 - 10.0 ** (-strength * profile / 10.0))
        return to_display(np.minimum(lin, (lin - floor) * 10.0 ** (-strength * profile / 10.0) + floor))

    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# blink
# ----------------------------------------------------------------------------------------------------


@register_perturbation(
    "oct_blink",
    modalities=("oct",),
    strength_range=(0.0, 0.9),
    description="blink / lost fixation: contiguous A-scans with no signal (noise floor only)",
    ceiling=0.9,
    ceiling_note="0.9 of the A-scans lost (the range top): a blink (the lid closed for 100-400 ms) or a lost pupil "
    "that starts or ends during a 10-50 ms B-scan blanks every A-scan acquired after or before it, so any "
    "fraction is physical; at 0.9 a tenth of the retina is left -- a B-scan with none left shows no anatomy "
    "and is retaken",
    side_effects=("smoothing", "zeroed"), side_effect_note="lost A-scans carry no signal"
    "; lost A-scans hold only the weak noise floor",
)
def oct_blink(
    image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None
) -> np.ndarray:
    """Blink artifact: A-scans acquired while the eyelid blocks the beam carry no signal.

    Physics: during a blink (or when the pupil is lost) no light returns from the retina, so the A-scans
    acquired in that interval contain only the detection noise floor; in a B-scan this is a band of
    dark columns with sharp lateral edges (Chhablani et al. 2014; Spaide, Fujimoto & Waheed, "Image
    artifacts in optical coherence tomography angiography", Retina 35 (2015) 2163).

    Model: 1-2 blinks with centres :math:`\\sim U(0, W)` sharing the lost A-scans in random proportions
    (drawn from ``rng``); lost columns are replaced by speckled noise floor :math:`N_f E`,
    :math:`E \\sim \\mathrm{Exp}(1)` (drawn from ``rng``); the edge column is mixed by its fractional
    coverage, so the image changes continuously. ``strength`` :math:`s` is the fraction of A-scans lost.

    Ceiling: 0.9 of the A-scans lost (the range top): a blink (the lid closed for 100-400 ms) or a lost
    pupil that starts or ends during a 10-50 ms B-scan blanks every A-scan acquired after or before it, so
    any fraction is physical; at 0.9 a tenth of the retina is left -- a B-scan with none left shows no
    anatomy and is retaken.
    """
    h, w = image.shape[:2]
    n = int(rng.integers(1, 3))
    centres = rng.uniform(0, w, size=n)
    shares = rng.dirichlet(np.ones(n))
    speckle = rng.exponential(1.0, size=(h, w))
    cols = np.arange(w, dtype=np.float64)
    lost = np.zeros(w)
    for c, share in zip(centres, shares):
        half = 0.5 * strength * share * w
        c = float(np.clip(c, half, w - half))  # keep the blink inside the scan
        lost = np.maximum(lost, np.clip(half + 0.5 - np.abs(cols + 0.5 - c), 0.0, 1.0))

    def fn(x: np.ndarray) -> np.ndarray:
        lin = to_linear(x)
        floor = noise_floor(lin)
        return to_display(lin * (1.0 - lost)[None, :] + floor * speckle * lost[None, :])

    if occlusion is not None:
        occlusion.append(np.broadcast_to(lost[None, :], (h, w)).copy())
    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# defocus
# ----------------------------------------------------------------------------------------------------


@register_perturbation(
    "oct_defocus",
    modalities=("oct",),
    strength_range=(0.0, 3.0),
    description="defocus: lateral blur from a widened beam and confocal signal loss",
    ceiling=3.0,
    ceiling_note="3 Rayleigh ranges out of focus (the range top): with a 7.5-10 um beam waist at the retina the "
    "Rayleigh range is 0.3-0.5 mm and 1 dioptre moves the focus by ~0.37 mm, so 3 Rayleigh ranges is a focus "
    "left 2-4 D off the eye's refraction; the retina is then 10x (10 dB) dimmer, at the limit of a usable scan",
    side_effects=("smoothing",),
    side_effect_note="defocus widens the speckle grains to the beam width: the pixel-scale high-pass energy falls although the speckle stays fully developed (contrast 1)",
)
def oct_defocus(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus: the retina lies outside the beam's focus.

    Physics: OCT's axial resolution is set by the source bandwidth, but its lateral resolution by the
    focused beam waist :math:`w_0`. Displaced by :math:`\\Delta z` from focus the Gaussian beam widens to
    :math:`w = w_0\\sqrt{1 + (\\Delta z/z_R)^2}` (lateral blur) and the confocal (single-mode fibre)
    collection efficiency drops as :math:`1/(1 + (\\Delta z/z_R)^2)` (dimmer image) (Drexler & Fujimoto
    2015, ch. 2; Izatt et al., "Optical coherence microscopy in scattering media", Opt. Lett. 19 (1994)
    590).

    Model: with :math:`s = \\Delta z / z_R`, the signal above the noise floor is treated as a coherent
    field: amplitude :math:`\\sqrt{I - N_f}` with a random phase per pixel (drawn from ``rng``; the
    scatterers are sub-resolution), convolved with the widened beam -- a Gaussian of extra width
    :math:`\\sigma = \\sigma_0 s` laterally and :math:`U(0, 0.15)\\sigma` axially -- and detected as
    intensity, normalised by the kernel's energy so the mean reflectivity is kept, times the confocal loss
    :math:`1/(1+s^2)`. The detail blurs but the speckle stays fully developed (contrast 1, grains as wide
    as the beam), and the retina dims -- it does not get brighter by despeckling (tested). At
    :math:`s = 0` the kernel is a delta and the image is unchanged. The nominal lateral resolution
    :math:`\\sigma_0 \\sim U(1, 2.5)` pixels is drawn from ``rng``. ``strength`` :math:`s` is the defocus in
    Rayleigh ranges.

    Ceiling: 3 Rayleigh ranges out of focus (the range top): with a 7.5-10 µm beam waist at the retina the
    Rayleigh range is 0.3-0.5 mm and 1 dioptre moves the focus by ~0.37 mm, so 3 Rayleigh ranges is a focus
    left 2-4 D off the eye's refraction; the retina is then 10x (10 dB) dimmer, at the limit of a usable scan.
    """
    sigma0 = float(rng.uniform(1.0, 2.5))
    axial = float(rng.uniform(0.0, 0.15))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=image.shape[:2])
    rot = np.exp(1j * phase)

    def fn(x: np.ndarray) -> np.ndarray:
        lin = to_linear(x)
        floor = noise_floor(lin)
        signal = np.clip(lin - floor, 0.0, None)
        sigma = (axial * sigma0 * strength, sigma0 * strength)
        field = np.sqrt(signal) * rot
        blurred = ndi.gaussian_filter(field.real, sigma, mode="reflect") + 1j * ndi.gaussian_filter(
            field.imag, sigma, mode="reflect")
        delta = np.zeros((65, 65))
        delta[32, 32] = 1.0
        energy = float((ndi.gaussian_filter(delta, sigma, mode="constant") ** 2).sum())
        detected = np.abs(blurred) ** 2 / max(energy, 1e-12)
        return to_display(detected / (1.0 + strength**2) + floor)

    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# motion (geometric)
# ----------------------------------------------------------------------------------------------------


def axial_motion_profile(width: int, rng: np.random.Generator) -> np.ndarray:
    """Per-A-scan axial displacement (unit peak): a smooth random walk (drift, pulse) plus 0-2 saccade jumps."""
    walk = np.cumsum(rng.standard_normal(width))
    walk = ndi.gaussian_filter1d(walk, max(width / 40.0, 1.0), mode="nearest")
    n_jumps = int(rng.integers(0, 3))
    jump_at = rng.integers(1, max(width, 2), size=n_jumps)
    jump_size = rng.normal(0.0, 1.0, size=n_jumps) * (np.abs(walk).max() + 1e-9)
    cols = np.arange(width)
    for at, size in zip(jump_at, jump_size):
        walk = walk + size * (cols >= at)
    walk -= walk.mean()
    peak = np.abs(walk).max()
    return walk / peak if peak > 0 else walk


@register_perturbation(
    "oct_motion",
    modalities=("oct",),
    strength_range=(0.0, 10.0),
    description="axial eye motion between A-scans: columns displaced in depth (mask moves too)",
    geometric=True,
    ceiling=10.0,
    ceiling_note="peak axial displacement 10 px (the range top): ~30 um at the demo's ~3 um per axial pixel (its "
    "~100 px retina stands for ~300 um); heartbeat, respiration and head drift in the chin rest move the retina "
    "axially by tens of um within a B-scan and by up to ~100 um over a volume (Kraus et al. 2012; de Kinkelder "
    "et al. 2011), so physics allows more than the range; in pixels, so it scales with the axial sampling",
)
def oct_motion(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Axial motion artifact: A-scans displaced in depth by eye/head motion during the B-scan.

    Physics: a B-scan is acquired A-scan by A-scan over tens of milliseconds; axial movement of the eye
    (heartbeat, respiration, head drift, saccades) changes the path length to the retina between
    A-scans, so each column is shifted in depth and the layers look wavy or broken (Chhablani et al.
    2014; Kraus et al., "Motion correction in optical coherence tomography volumes on a per A-scan basis
    using orthogonal scan patterns", Biomed. Opt. Express 3 (2012) 1182).

    Model: column :math:`c` is translated in depth by :math:`\\mathrm{round}(s\\,m(c))` whole pixels (no
    interpolation: a sub-pixel shift would only resample the speckle, which the SSIM bands would measure
    instead of the displacement; edge values repeated), :math:`m` a zero-mean smooth random walk with 0-2 saccade steps, unit peak
    (drawn from ``rng``). The mask moves with the same displacement (nearest neighbour), so labels stay
    on the anatomy. ``strength`` :math:`s` is the peak displacement in pixels.

    Ceiling: peak axial displacement 10 px (the range top): ~30 µm at the demo's ~3 µm per axial pixel (its
    ~100 px retina stands for ~300 µm); heartbeat, respiration and head drift in the chin rest move the
    retina axially by tens of µm within a B-scan and by up to ~100 µm over a volume (Kraus et al. 2012;
    de Kinkelder et al., "Heartbeat-induced axial motion artifacts in optical coherence tomography
    measurements of the retina", Invest. Ophthalmol. Vis. Sci. 52 (2011) 3908), so physics allows more than
    the range. The ceiling is in pixels: it scales with the axial sampling.
    """
    h, w = image.shape[:2]
    shift = np.rint(strength * axial_motion_profile(w, rng))  # whole pixels: no interpolation
    src = np.clip(np.arange(h)[:, None] - shift[None, :], 0, h - 1).astype(int)
    cols = np.arange(w)[None, :]
    out = image[src, cols]
    moved = None if mask is None else np.asarray(mask, dtype=bool)[src, cols]
    return out, moved


# ----------------------------------------------------------------------------------------------------
# speckle
# ----------------------------------------------------------------------------------------------------


def speckle_field(shape: tuple[int, int], grain: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle intensity (unit mean, exponential statistics) with grain ``(axial, lateral)`` px.

    The sum of many random phasors: a circular complex Gaussian field low-pass filtered by the
    system's PSF, squared magnitude (Goodman, *Speckle Phenomena in Optics*, 2007).
    """
    field = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    field = ndi.gaussian_filter(field.real, grain) + 1j * ndi.gaussian_filter(field.imag, grain)
    intensity = np.abs(field) ** 2
    return intensity / intensity.mean()


@register_perturbation(
    "oct_speckle",
    modalities=("oct",),
    strength_range=(0.0, 1.5),
    description="speckle: multiplicative exponential-statistics noise of coherent imaging (fewer averages)",
    ceiling=1.0,
    ceiling_note="one look of fully developed speckle (contrast 1, log-intensity standard deviation 5.6 dB): the "
    "grainiest a single unaveraged coherent frame can be (Goodman 2007); s > 1 would widen the log-intensity "
    "spread beyond what interference of many scatterers produces -- it is not speckle",
    side_effects=("zeroed",), side_effect_note="fully developed speckle is exponentially distributed: its dark grains reach the floor",
)
def oct_speckle(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Speckle: coherent interference of light backscattered by sub-resolution scatterers.

    Physics: every resolution cell holds many scatterers whose backscattered fields add with random
    phases; the detected intensity is exponentially distributed (fully developed speckle, contrast 1)
    and multiplies the mean reflectivity. Clinical B-scans average several registered frames to reduce
    it; a single or poorly averaged frame shows the full grainy texture (Schmitt, Xiang & Yung 1999;
    Goodman, *Speckle Phenomena in Optics*, Roberts 2007).

    Model: :math:`I' = I\\, S^{s} / \\langle S^{s}\\rangle_{\\log}`, i.e. in dB an added
    :math:`s\\,(10\\log_{10} S - \\overline{10\\log_{10} S})`, with :math:`S` a fully developed speckle
    pattern of grain :math:`(U(0.6, 1.5), U(0.6, 2))` pixels (axial, lateral; drawn from ``rng``).
    ``strength`` :math:`s`: 1 adds one look of fully developed speckle (5.6 dB standard deviation);
    :math:`s > 1` (the range goes to 1.5) would raise the log-domain spread beyond a single look.

    Ceiling: one look, :math:`s = 1` (fully developed speckle, contrast 1, log-intensity standard deviation
    5.6 dB): the grainiest a single unaveraged coherent frame can be (Goodman 2007); :math:`s > 1` would widen
    the log-intensity spread beyond what interference of many scatterers produces -- it is not speckle. On
    the demo B-scans (FOV SSIM, seed 0) levels 1-4 are reached within it (level 4 at :math:`s \\approx 0.8-1`);
    level 5 on 2 of 6 (SSIM at :math:`s = 1`: 0.60-0.62 on the others; before the ceiling it took
    :math:`s \\approx 1.1-1.26`): the rest is ``reason = "ceiling"``.
    """
    grain = (float(rng.uniform(0.6, 1.5)), float(rng.uniform(0.6, 2.0)))
    s_db = 10.0 * np.log10(np.clip(speckle_field(image.shape[:2], grain, rng), 1e-12, None))
    s_db -= s_db.mean()
    return _per_channel(image, lambda x: x + strength * s_db / DYNAMIC_RANGE_DB)
