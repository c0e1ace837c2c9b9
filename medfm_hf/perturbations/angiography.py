"""X-ray angiography (fluoroscopy / cine) artifacts.

The displayed value is read as image brightness, i.e. the light output of the image receptor
(vessels filled with contrast agent are dark on a brighter background). Colour inputs are processed
channel by channel with the same draws.

References: Seibert, "Flat-panel detectors: how much better are they?", Pediatr. Radiol. 36 (2006)
173-181; Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., LWW 2012, ch. 9.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations._common import keep_quantum_noise
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a float ``(H, W) -> (H, W)`` function to a grey image or to every channel of an RGB one."""
    x = to_float(image)
    out = fn(x) if x.ndim == 2 else np.stack([fn(x[..., c]) for c in range(x.shape[2])], axis=2)
    return from_float(out, image.dtype)


# ----------------------------------------------------------------------------------------------------
# veiling glare / haze
# ----------------------------------------------------------------------------------------------------


def glare_psf_blur(x: np.ndarray, sigma_px: float, tail_px: float, tail_weight: float) -> np.ndarray:
    """Image convolved with a unit-area long-tailed glare PSF: a Gaussian core plus an exponential tail.

    The exponential tail :math:`\\propto e^{-r/\\lambda}` is approximated by a sum of three Gaussians of
    widths :math:`\\lambda, 2\\lambda, 4\\lambda` (a standard fit of the veiling-glare kernel). The wide
    Gaussians are applied in the Fourier domain on a symmetrically padded image (edges reflected).
    """
    pad = int(min(3.0 * 4.0 * tail_px, max(x.shape)))
    xp = np.pad(x, pad, mode="symmetric")
    spectrum = np.fft.rfft2(xp)

    def blur(sigma: float) -> np.ndarray:
        out = np.fft.irfft2(ndi.fourier_gaussian(spectrum, sigma, n=xp.shape[1]), s=xp.shape)
        return out[pad : pad + x.shape[0], pad : pad + x.shape[1]]

    core = blur(sigma_px)
    tail = sum(blur(tail_px * m) for m in (1.0, 2.0, 4.0)) / 3.0
    return (1.0 - tail_weight) * core + tail_weight * tail


@register_perturbation(
    "angio_haze",
    modalities=("angiography",),
    strength_range=(0.0, 50.0),
    description="veiling glare / scatter haze: signal spread by a long-tailed PSF, vessel contrast washed out",
    ceiling=5.0,
    ceiling_note="veil-to-primary ratio <= 5: scatter-to-primary ratios reach ~5 for a 20-25 cm thick chest or "
    "abdomen imaged without an anti-scatter grid (Boone & Seibert 1988; Bushberg et al. 2012 sec. 7.7) and the "
    "image intensifier's veiling glare adds to it (Seibert et al. 1984); thicker patients are imaged with a grid",
)
def angio_haze(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Veiling glare and scatter haze.

    Physics: scattered X-rays reaching the receptor, and light and electrons scattered in the image
    intensifier's output phosphor, optics and input window, spread signal over a very wide, long-tailed
    point spread function. The veil lifts dark, contrast-filled vessels toward the surrounding
    brightness and washes out their contrast (Seibert, Nalcioglu & Roeck, "Characterization of the
    veiling glare PSF in x-ray image intensified fluoroscopy", Med. Phys. 11 (1984) 172; Shaw et al.,
    "Scatter and veiling glare corrections for quantitative digital subtraction angiography", Proc.
    SPIE 314 (1981)).

    Model: :math:`x' = (x + s\\,(h * x)) / (1 + s)` -- the veil is added to the primary signal and the
    automatic brightness control of the fluoroscopy chain restores the mean brightness;
    :math:`h` is a unit-area PSF with a Gaussian core of :math:`\\sigma \\sim U(0.05, 0.12)\\max(H, W)` and
    an exponential-like tail of scale :math:`\\lambda \\sim U(0.1, 0.25)\\max(H, W)` carrying a fraction
    :math:`U(0.3, 0.7)` of the veil (all drawn from ``rng``). ``strength`` :math:`s` is the
    veil-to-primary ratio (scatter-to-primary ratios of 1-5 are usual in cardiac angiography without a
    grid; glare adds to it).

    Noise: the automatic brightness control keeps the detected dose constant (it lowers the tube
    current as the veil adds signal), so the quantum mottle stays at the clean frame's level; the mottle
    the veil's averaging removed is put back as white noise
    (:func:`~medfm_hf.perturbations._common.keep_quantum_noise`). The levels are therefore reached by
    washing out vessel contrast, not by denoising the frame (the earlier model lost 90 % of the
    high-pass energy at level 5).

    Ceiling: veil-to-primary ratio 5 -- scatter-to-primary ratios reach ~5 for a 20-25 cm thick chest or
    abdomen imaged without an anti-scatter grid (Boone & Seibert 1988; Bushberg et al. 2012 sec. 7.7) and the
    image intensifier's veiling glare adds to it (Seibert et al. 1984); thicker patients are imaged with a
    grid. What is not reached within it is reported (``reason = "ceiling"``).
    """
    size = max(image.shape[:2])
    sigma = float(rng.uniform(0.05, 0.12)) * size
    tail = float(rng.uniform(0.1, 0.25)) * size
    tail_weight = float(rng.uniform(0.3, 0.7))
    z = rng.standard_normal(image.shape[:2])

    def fn(x: np.ndarray) -> np.ndarray:
        veiled = (x + strength * glare_psf_blur(x, sigma, tail, tail_weight)) / (1.0 + strength)
        return keep_quantum_noise(x, veiled, z)

    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# motion blur
# ----------------------------------------------------------------------------------------------------

N_TRAJECTORY = 48


def motion_path(rng: np.random.Generator, n: int = N_TRAJECTORY) -> np.ndarray:
    """Zero-mean 2-D motion path ``(n, 2)`` (rows, cols) during one exposure, peak distance 1 from its mean.

    A linear drift (respiration, slow over one frame) plus a sinusoid of 0.2-1 cycles per exposure
    (the cardiac contraction), each in a random direction.
    """
    t = np.linspace(0.0, 1.0, n)[:, None]
    drift_dir = rng.uniform(0.0, 2.0 * np.pi)
    beat_dir = rng.uniform(0.0, 2.0 * np.pi)
    drift = rng.uniform(0.2, 1.0) * t * np.array([[np.sin(drift_dir), np.cos(drift_dir)]])
    beat = np.sin(2.0 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0.0, 2.0 * np.pi))
    path = drift + beat * np.array([[np.sin(beat_dir), np.cos(beat_dir)]])
    path -= path.mean(axis=0, keepdims=True)
    peak = np.sqrt((path**2).sum(axis=1)).max()
    return path / peak if peak > 0 else path


def motion_blur_image(x: np.ndarray, path_px: np.ndarray) -> np.ndarray:
    """Average of ``x`` translated along ``path_px`` (sub-pixel, exact Fourier shifts, reflect padded)."""
    pad = int(np.ceil(np.abs(path_px).max())) + 2
    xp = np.pad(x, pad, mode="reflect")
    ky = np.fft.fftfreq(xp.shape[0])[:, None]
    kx = np.fft.fftfreq(xp.shape[1])[None, :]
    otf = np.zeros(xp.shape, dtype=np.complex128)
    for dy, dx in path_px:
        otf += np.exp(-2j * np.pi * (ky * dy + kx * dx))
    otf /= len(path_px)
    out = np.real(np.fft.ifft2(np.fft.fft2(xp) * otf))
    return out[pad : pad + x.shape[0], pad : pad + x.shape[1]]


@register_perturbation(
    "angio_motion",
    modalities=("angiography",),
    strength_range=(0.0, 30.0),
    description="cardiac/respiratory motion during the exposure: blur along a curved path",
    ceiling=6.0,
    ceiling_note="peak excursion <= 6 px (~2 mm at the demo's ~0.33 mm per pixel, its main vessels 9-12 px wide "
    "standing for 3-4 mm proximal coronaries): coronary arteries move at up to ~110 mm/s (Mao et al. 2000) and "
    "a frame integrates at most one video frame (33-40 ms, continuous fluoroscopy; pulsed cine uses 3-10 ms), "
    "so the path's largest distance from its mean is <= 110 mm/s x 40 ms / 2 = 2.2 mm; in pixels, so it "
    "scales with the image's resolution",
    side_effects=("smoothing",), side_effect_note="motion blur",
)
def angio_motion(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Motion blur from cardiac and respiratory motion during the exposure.

    Physics: coronary arteries move at up to 10-100 mm/s during the cardiac cycle, and breathing adds a
    slower drift; over a pulse of several milliseconds (longer at low dose rates) a vessel's image is
    smeared along its trajectory, blurring its edges and lowering its contrast (Bushberg et al. 2012,
    ch. 9; Wang & Blackburn, "The AAPM/RSNA physics tutorial: X-ray image intensifiers for fluoroscopy",
    RadioGraphics 20 (2000) 1471).

    Model: :math:`x' = \\frac1n \\sum_t x(r - s\\,p(t))`, :math:`p` a zero-mean path (linear drift plus a
    sinusoidal beat, random directions, frequency and phase, drawn from ``rng``; peak distance 1 from
    its mean, so the anatomy is not displaced on average and no label moves). ``strength`` :math:`s` is
    the peak excursion in pixels.

    Ceiling: peak excursion 6 px (~2 mm at the demo's ~0.33 mm per pixel, its main vessels 9-12 px wide
    standing for 3-4 mm proximal coronaries): coronary arteries move at up to ~110 mm/s (Mao et al., "Coronary
    artery motion in electron beam tomography", J. Comput. Assist. Tomogr. 24 (2000) 253) and a frame
    integrates at most one video frame (33-40 ms, continuous fluoroscopy; pulsed cine uses 3-10 ms), so the
    path's largest distance from its mean is at most 110 mm/s x 40 ms / 2 = 2.2 mm. The ceiling is in pixels:
    it scales with the image's resolution.

    Severity: blur changes the vessels, the edges and the quantum mottle of the frame. On the demo angiograms
    (FOV SSIM, seed 0) levels 1-4 are reached within the ceiling on all six; level 5 on one (SSIM at 6 px
    0.60-0.68 on the others): it needed 7.5-30 px before the ceiling, a smear of 5-20 mm, several vessel
    widths, which no single frame integrates (``reason = "ceiling"``; ``docs/physics_audit.md``).
    """
    path = motion_path(rng)
    return _per_channel(image, lambda x: motion_blur_image(x, strength * path))
