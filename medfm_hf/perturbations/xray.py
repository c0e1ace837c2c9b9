"""Projection radiography (X-ray) artifacts, simulated on detector intensities.

The displayed value :math:`x \\in [0, 1]` is read as a log-domain attenuation image (bright = dense, as
in a MONOCHROME2 radiograph): the primary intensity reaching the detector is
:math:`I = e^{-K x}` with :math:`K = 4` e-folds over the display range (air 1, dense bone ~2 %). Each
artifact acts on :math:`I` (or on the counts) and the result is mapped back with :math:`x' = -\\ln(I')/K`,
clipped to the display range. Colour inputs are processed channel by channel with the same draws.

References: Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., LWW 2012, ch. 7;
Samei et al., "Assessment of display performance for medical imaging systems", Med. Phys. 32 (2005).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations._common import keep_quantum_noise
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

K_ATTENUATION = 4.0
AIR_PHOTONS = 2000.0  # detected quanta per pixel behind air at the reference exposure
FULL_WELL = 1.5  # detector saturation, relative to the air signal at the reference exposure


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a float ``(H, W) -> (H, W)`` function to a grey image or to every channel of an RGB one."""
    x = to_float(image)
    out = fn(x) if x.ndim == 2 else np.stack([fn(x[..., c]) for c in range(x.shape[2])], axis=2)
    return from_float(out, image.dtype)


def to_intensity(x: np.ndarray) -> np.ndarray:
    """Display value (log attenuation) -> primary intensity relative to air."""
    return np.exp(-K_ATTENUATION * x)


def to_display(intensity: np.ndarray) -> np.ndarray:
    """Detector intensity relative to air -> display value (unclipped)."""
    return -np.log(np.clip(intensity, 1e-12, None)) / K_ATTENUATION


# ----------------------------------------------------------------------------------------------------
# scatter
# ----------------------------------------------------------------------------------------------------


def scatter_field(primary: np.ndarray, sigma_px: float, tilt: float, tilt_angle: float) -> np.ndarray:
    """Scatter per unit scatter-to-primary ratio: the primary blurred by a broad Gaussian, with a gradient.

    Scatter is primary radiation redirected by Compton interactions; its spatial distribution is close
    to the primary convolved with a very broad kernel (Boone & Seibert 1988), slightly asymmetric with
    patient thickness (``tilt``: relative gradient across the field along ``tilt_angle``).
    """
    h, w = primary.shape
    blurred = ndi.gaussian_filter(primary, sigma_px, mode="reflect")
    v, u = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    grad = 1.0 + tilt * (u * np.cos(tilt_angle) + v * np.sin(tilt_angle))
    return blurred * grad


@register_perturbation(
    "xray_scatter",
    modalities=("xray",),
    strength_range=(0.0, 12.0),
    ceiling=10.0,
    ceiling_note="scatter-to-primary ratio <= 10: thick abdomen or pelvis without an anti-scatter grid",
    description="Compton scatter without a grid: low-frequency veil at a scatter-to-primary ratio",
)
def xray_scatter(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None
) -> np.ndarray:
    """Scatter fog: loss of contrast from scattered radiation reaching the detector.

    Physics: most photons that interact in the patient are Compton scattered; those reaching the
    detector carry no spatial information and add a smooth background whose size relative to the
    primary is the scatter-to-primary ratio (SPR; 1-10 for chest and abdomen without an anti-scatter
    grid). In the log image contrast is reduced most where the primary is weakest, behind dense anatomy
    (Boone & Seibert, "An analytical model of the scattered radiation distribution in diagnostic
    radiology", Med. Phys. 15 (1988) 721; Bushberg et al. 2012, sec. 7.7).

    Model: :math:`I' = (I + s\\, S)/(1 + s)`, :math:`S = (G_\\sigma * I)(1 + g\\,\\hat n\\cdot r)`,
    :math:`x' = -\\ln I'/K`, with :math:`\\sigma \\sim U(0.08, 0.2)\\max(H, W)`, gradient
    :math:`g \\sim U(0, 0.3)` in a random direction (drawn from ``rng``). ``strength`` :math:`s` is the SPR.
    The automatic exposure control ends the exposure at the same detector dose, so the total signal is
    renormalised by :math:`1 + s` (air stays air, nothing is pushed below black) and the quantum noise of
    the detected photons stays at the clean image's level: the noise the contrast loss removed is put
    back as white noise inside the exposed field (:func:`~medfm_hf.perturbations._common.keep_quantum_noise`).
    Ceiling: scatter-to-primary ratio 10 -- a thick abdomen or pelvis without an anti-scatter grid (Bushberg
    et al. 2012, sec. 7.7).
    """
    sigma = float(rng.uniform(0.08, 0.2)) * max(image.shape[:2])
    tilt = float(rng.uniform(0.0, 0.3))
    tilt_angle = float(rng.uniform(0.0, 2.0 * np.pi))
    z = rng.standard_normal(image.shape[:2])

    def fn(x: np.ndarray) -> np.ndarray:
        primary = to_intensity(x)
        out = to_display((primary + strength * scatter_field(primary, sigma, tilt, tilt_angle)) / (1.0 + strength))
        return keep_quantum_noise(x, out, z, fov)

    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# exposure
# ----------------------------------------------------------------------------------------------------


def exposure_display(x: np.ndarray, log2_dose: float, z: np.ndarray, photons: float = AIR_PHOTONS) -> np.ndarray:
    """Display image after changing the dose by :math:`d = 2^{\\text{log2\\_dose}}` (unclipped).

    The detector sees :math:`d I` (relative to air at the reference dose) and saturates at
    :data:`FULL_WELL`; the digital radiography processing normalises the log signal back by
    :math:`\\ln d` (exposure-index normalisation), so the mean grey level does not follow the dose.
    A lower dose adds the *excess* quantum noise, log-domain variance :math:`(1/d - 1)/(N_0 I)`; a
    higher dose adds none (noise cannot be removed) but regions whose signal exceeds the full well burn
    out: the display maps a saturated reading to black, like direct exposure, so thin anatomy is lost.
    """
    dose = 2.0**log2_dose
    intensity = to_intensity(x)
    counts = photons * intensity
    sigma_log = np.sqrt(max(1.0 / dose - 1.0, 0.0) / counts)
    detected = np.minimum(dose * intensity, FULL_WELL)
    burned = dose * intensity >= FULL_WELL
    out = to_display(detected / dose) + sigma_log * z / K_ATTENUATION
    return np.where(burned, 0.0, out)  # the display maps a saturated detector reading to black


@register_perturbation(
    "xray_exposure",
    modalities=("xray",),
    strength_range=(0.0, 8.0),
    ceiling=4.0,
    ceiling_note="exposure error <= 4 stops (16x): a failed automatic exposure control or a wrong manual "
    "technique; larger errors are caught at acquisition (exposure index out of range)",
    side_effects=("zeroed",),
    side_effect_note="over-exposure burns thin regions out to black",
    description="under/over-exposure: dose change with quantum noise in the log domain, detector saturation",
)
def xray_exposure(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure error: wrong tube current-time product or failed automatic exposure control.

    Physics: detected quanta are Poisson with mean :math:`N = d N_0 e^{-\\mu L}`. Under-exposure
    (:math:`d < 1`) raises the relative quantum noise :math:`1/\\sqrt N` (mottle), worst behind dense
    anatomy; over-exposure saturates the detector behind thin regions (burn-out). Digital radiography
    normalises the log signal to a target exposure index, so the grey level does not follow the dose --
    unlike :func:`~medfm_hf.perturbations.base.brightness` (Bushberg et al. 2012, sec. 7.5; Seibert,
    "Digital radiography: image quality and radiation dose", Health Phys. 95 (2008) 586).

    Model (:func:`exposure_display`): :math:`d = 2^{\\pm s}`, :math:`N_0 = 2000` quanta per pixel behind
    air, full well 1.5 times the air signal at the reference dose; the direction (under or over) and
    the noise field :math:`z` (standard normal, slightly correlated by the detector's MTF) are drawn from
    ``rng``. ``strength`` :math:`s` is the exposure error in stops (factors of two).

    Ceiling: 4 stops (16x) -- a failed automatic exposure control or a wrong manual technique; larger errors
    are caught at acquisition (exposure index out of range).
    """
    direction = -1.0 if rng.random() < 0.5 else 1.0
    z = ndi.gaussian_filter(rng.standard_normal(image.shape[:2]), 0.6)
    z /= z.std() if z.std() > 0 else 1.0
    return _per_channel(image, lambda x: exposure_display(x, direction * strength, z))


# ----------------------------------------------------------------------------------------------------
# anti-scatter grid
# ----------------------------------------------------------------------------------------------------

GRID_SUBSAMPLES = 8


def grid_transmission(
    shape: tuple[int, int], frequency: float, duty: float, phase: float, angle: float, strip_att: float
) -> np.ndarray:
    """Pixel-integrated transmission of a linear lead grid.

    ``frequency`` in line pairs per pixel (above 0.5 the grid is undersampled and aliases into a moiré
    pattern), ``duty`` the lead strip fraction of a period, ``angle`` the strip direction (radians from
    the rows), ``strip_att`` the strip's attenuation in e-folds (transmission :math:`e^{-a}`). Each pixel
    averages ``GRID_SUBSAMPLES`` samples across the strips (the detector's aperture).
    """
    h, w = shape
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    u = rr * np.cos(angle) + cc * np.sin(angle)  # coordinate across the strips
    offsets = (np.arange(GRID_SUBSAMPLES) + 0.5) / GRID_SUBSAMPLES - 0.5
    lead = np.zeros(shape)
    for o in offsets:
        lead += (np.mod(frequency * (u + o) + phase, 1.0) < duty).astype(np.float64)
    lead /= GRID_SUBSAMPLES
    return 1.0 - lead * (1.0 - np.exp(-strip_att))


@register_perturbation(
    "xray_grid",
    modalities=("xray",),
    strength_range=(0.0, 5.0),
    description="anti-scatter grid lines: lead strip shadows, moire when the grid is undersampled",
    ceiling=5.0,
    ceiling_note="5 e-folds (the range top, 0.7 % transmission): a primary ray that meets a focused grid's strip "
    "runs along its height, 1-3 mm of lead for grid ratios 5:1-16:1, and lead attenuates 57-340 /cm at the "
    "30-60 keV of a 60-120 kVp beam, so a strip is opaque (>= 6 e-folds); at 5 e-folds it is opaque within "
    "1 % and stronger settings change nothing visible", side_effects=("saturated",), side_effect_note="opaque strip shadows behind dense (already bright) anatomy exceed the display range",
)
def xray_grid(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Grid-line and moiré artifact from a stationary anti-scatter grid.

    Physics: a focused grid of thin lead strips absorbs scatter but also casts a periodic shadow of the
    strips in the primary. If the grid does not move during exposure (stationary grid, failed Bucky
    motion) the strip shadows are seen as lines; when the strip frequency exceeds the detector's Nyquist
    frequency they alias into a low-frequency moiré pattern (Lin et al., "Moiré patterns in digital
    radiography", Proc. SPIE 6142 (2006); Bushberg et al. 2012, sec. 7.7).

    Model: :math:`I' = I\\, T`, :math:`T` the pixel-integrated transmission of strips at :math:`f \\sim
    U(0.2, 0.8)` line pairs per pixel (resolved below 0.5, aliased above), duty :math:`w \\sim U(0.15,
    0.35)`, random phase, direction near the rows or the columns with a tilt :math:`U(-3, 3)` degrees
    (all drawn from ``rng``). ``strength`` :math:`s` is the strips' attenuation :math:`\\mu t` in e-folds
    (transmission :math:`e^{-s}`).

    Ceiling: 5 e-folds (the range top, 0.7 % transmission) -- a primary ray that meets a focused grid's strip
    runs along its height, 1-3 mm of lead for grid ratios 5:1-16:1, and lead attenuates 57-340 /cm at the
    30-60 keV of a 60-120 kVp beam, so a strip is opaque (>= 6 e-folds); at 5 e-folds it is opaque within
    1 % and stronger settings change nothing visible.

    Severity: the strips cover only the duty fraction of the field and, in the log image, raise dense
    (already bright) regions toward white where they barely show; SSIM levels off once the strips are
    opaque (s ~ 4). Measured over the exposed field, all five levels are reached on the six demo
    radiographs (``docs/physics_audit.md``); a bright radiograph with a narrow exposed field may still
    miss level 5, reported as ``saturated``.
    """
    frequency = float(rng.uniform(0.2, 0.8))
    duty = float(rng.uniform(0.15, 0.35))
    phase = float(rng.uniform(0.0, 1.0))
    angle = np.deg2rad(float(rng.uniform(-3.0, 3.0)) + (90.0 if rng.random() < 0.5 else 0.0))
    trans = grid_transmission(image.shape[:2], frequency, duty, phase, angle, strength)
    return _per_channel(image, lambda x: to_display(to_intensity(x) * trans))
