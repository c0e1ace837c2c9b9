"""Ultrasound artifacts: acoustic shadowing, reverberation and time-gain-compensation errors.

All three act on the displayed B-mode image, which is the log-compressed echo envelope: a display value
``v`` in ``[0, 1]`` corresponds to an echo level ``L = v * DR`` dB above the noise floor, with a
dynamic range ``DR = 60`` dB (a typical abdominal preset).  A gain change of ``g`` dB therefore shifts
the display value by ``g / DR``.

Scan lines. Each artifact is computed along the scan lines of the frame's own geometry: the field of
view (:func:`medfm_hf.perturbations.fov.detect_fov`: the image sector without burned-in overlays) gives
a linear or a sector/convex geometry (:func:`~medfm_hf.perturbations.fov.scan_geometry`); a sector is
resampled to (depth, angle) coordinates, the artifact's *change* is computed there (rows = depth, columns
= scan lines) and mapped back, and only pixels inside the FOV are changed. The surround, text, ECG traces,
colour bars and the gap between the panels of a dual display stay exactly as they were, and no overlay is
ever copied into the image (pixels outside the FOV are zero in the scan-line frame).

Grey ``(H, W)`` images are the usual case; RGB images are treated channel by channel with the same
artifact geometry (colour B-mode screenshots keep their colour overlays in place).

References
----------
* Feldman M.K., Katyal S., Blackwood M.S. "US artifacts." RadioGraphics 29(4):1179-1189, 2009.
* Kremkau F.W., Taylor K.J. "Artifacts in ultrasound imaging." J Ultrasound Med 5(4):227-237, 1986.
* Szabo T.L. *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., Academic Press, 2014 (ch. 8 on
  time-gain compensation, ch. 10 on reverberation).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import CubicSpline
from scipy.special import ndtr

from medfm_hf.perturbations.fov import scan_geometry
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

DYNAMIC_RANGE_DB = 60.0
"""Display dynamic range assumed for the log-compressed B-mode image (dB mapped onto [0, 1])."""


def _channels(x: np.ndarray) -> np.ndarray:
    """View a grey ``(H, W)`` float image as ``(H, W, 1)``; RGB stays ``(H, W, 3)``."""
    return x[..., None] if x.ndim == 2 else x


def _echo_level(x: np.ndarray) -> np.ndarray:
    """Local echo level: luminance after a 7x7 grey opening, which removes thin burned-in text/markers."""
    return ndi.grey_opening(x.mean(axis=2), size=(7, 7))


def _remap(img: np.ndarray, mapx: np.ndarray, mapy: np.ndarray) -> np.ndarray:
    """Bilinear resampling of every channel of a float ``(H, W, C)`` image at ``(mapx, mapy)``; 0 outside."""
    import cv2

    mx, my = mapx.astype(np.float32), mapy.astype(np.float32)
    return np.stack([cv2.remap(img[..., c].astype(np.float32), mx, my, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
                     for c in range(img.shape[2])], axis=2).astype(np.float64)


def scan_change(x: np.ndarray, fov: np.ndarray, model) -> np.ndarray:
    """The change ``model`` makes to the frame ``x`` (float ``(H, W, C)``), computed along the scan lines.

    ``model`` maps a scan-line frame (rows = depth, columns = scan lines; zero outside the FOV) to its
    perturbed version. Linear probes: the frame itself. Sector/convex probes: the frame resampled on a
    (depth, angle) grid of the same size between the FOV's nearest and farthest depth and its edge
    angles, and the change resampled back. Returned: the change in image coordinates, zero outside the FOV.
    """
    geo = scan_geometry(fov)
    inside = x * fov[..., None]
    if geo.kind == "linear":
        return (model(inside) - inside) * fov[..., None]
    h, w = fov.shape
    ax, ay = geo.apex
    a0, a1 = geo.angles
    r_in, r_out = float(geo.depth[fov].min()), float(geo.depth[fov].max())
    radii = np.linspace(r_in, r_out, h)
    angles = np.linspace(a0, a1, w)
    mapx = ax + radii[:, None] * np.sin(angles)[None, :]
    mapy = ay + radii[:, None] * np.cos(angles)[None, :]
    polar = _remap(inside, mapx, mapy)
    change = model(polar) - polar
    gx = (geo.line - a0) / max(a1 - a0, 1e-9) * (w - 1)
    gy = (geo.depth - r_in) / max(r_out - r_in, 1e-9) * (h - 1)
    return _remap(change, gx, gy) * fov[..., None]


def _fov_of(image: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    if fov is not None:
        return np.asarray(fov, bool)
    from medfm_hf.perturbations.fov import detect_fov

    return detect_fov(image, "ultrasound")


def _tissue_top(lum: np.ndarray, x0: float, x1: float, threshold: float = 0.08) -> float:
    """Depth (row) where echoes start below the transducer within columns ``[x0, x1)``.

    ``lum`` should be :func:`_echo_level` (burned-in text removed). The row profile is its mean over
    those columns; the first row whose profile exceeds ``threshold`` is taken as the skin line (0 if
    no row does).
    """
    h, w = lum.shape
    a, b = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.ceil(x1), 1, w))
    prof = ndi.uniform_filter1d(lum[:, a:b].mean(axis=1), size=max(3, h // 32))
    rows = np.flatnonzero(prof > threshold)
    return float(rows[0]) if rows.size else 0.0


@register_perturbation(
    "us_shadowing",
    modalities=("ultrasound",),
    strength_range=(0.0, 1.0),
    description="acoustic shadow distal to strongly attenuating reflectors (bone, calculi, gas)",
    ceiling=1.0,
    ceiling_note="1 (the range top): the reflectors span up to the whole width -- bowel gas or a rib cage under a "
    "convex probe hides most of the scan lines, and each reflector's loss (35-60 dB drawn: a gas interface "
    "reflects 99.9 %, -30 dB each way; bone absorbs ~20 dB/cm/MHz) leaves the region behind it anechoic",
    side_effects=("zeroed", "smoothing"),
    side_effect_note="an acoustic shadow is anechoic (black, without speckle) distal to the reflector",
)
def us_shadowing(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None,
    occlusion: list | None = None,
) -> np.ndarray:
    r"""Acoustic shadowing below strong reflectors along the beam.

    **Physics.** At an interface with a large acoustic-impedance mismatch (soft tissue/bone, calculus,
    gas) almost all incident energy is reflected or absorbed, so the scan lines that cross it carry
    little energy to deeper tissue: the region distal to the reflector, along the beam, is dark ("clean"
    shadow), while the interface itself returns a strong echo (Feldman et al. 2009, RadioGraphics 29:1179;
    Kremkau & Taylor 1986).

    **Model.** ``n`` reflectors (2-3, from ``rng``) with lateral centres :math:`x_k`, depths
    :math:`z_k` (3-25 % of the tissue depth below the skin line) and maximal lateral sizes
    :math:`W_k` (0.75-1.2 of the width for two reflectors, 0.5-0.8 for three). At strength
    :math:`s \in [0, 1]` reflector *k* spans :math:`w_k = s W_k`: a larger obstruction blocks more
    scan lines, up to a rib cage or bowel gas that hides most of the field. Its shadow mask is

    .. math:: M_k(x, z) = \Big[\Phi\Big(\tfrac{w_k/2 - |x - x_k|}{\sigma_b}\Big)
              - \Phi\Big(\tfrac{-w_k/2 - |x - x_k|}{\sigma_b}\Big)\Big]
              \cdot \mathbb{1}[z > z_k + 2\sigma_p],

    the obstruction seen through a Gaussian beam of width :math:`\sigma_b` (1 % of the width + 1 px;
    :math:`\Phi` the normal CDF, so the shadow fades in continuously from :math:`w_k = 0`) and the pulse length
    :math:`\sigma_p`. Each reflector returns a bright echo :math:`E_k\,\phi(z - z_k)` (Gaussian pulse
    profile :math:`\phi`, :math:`E_k \in [0.75, 1]` from ``rng``; only where the frame holds echoes, not
    outside a sector) and attenuates everything distal to it
    by :math:`A_k` dB (35-60 dB, from ``rng``); losses along a scan line add in dB, so in the log
    display

    .. math:: v' = \max\big(v, \max_k E_k\phi(z - z_k)\big) - \sum_k M_k A_k / \mathrm{DR}

    (a deeper reflector's own echo is dimmed by the shadows of shallower ones).

    **Reach.** The shadow can only remove echoes that exist: the lowest SSIM is about one minus the
    fraction of the FOV holding tissue distal to the reflectors. Measured over the sector (FOV SSIM, seed 0)
    on the demo ultrasound test images all five levels are reached, level 5 at :math:`s` = 0.17-0.71
    (``docs/physics_audit.md``).

    Ceiling: 1 (the range top): the reflectors span up to the whole width -- bowel gas or a rib cage under a
    convex probe hides most of the scan lines, and each reflector's loss (35-60 dB drawn: a gas interface
    reflects 99.9 %, -30 dB each way; bone absorbs ~20 dB/cm/MHz) leaves the region behind it anechoic.

    Parameters
    ----------
    image : numpy.ndarray
        Grey ``(H, W)`` or RGB ``(H, W, 3)``, ``uint8`` or ``uint16``.
    strength : float
        Fraction :math:`s` of the reflectors' maximal lateral size, in ``[0, 1]``.
    rng : numpy.random.Generator
        Source of every random draw (count, positions, sizes, attenuations).

    Returns
    -------
    numpy.ndarray
        The shadowed image, same dtype and shape.
    """
    xfull = _channels(to_float(image))
    fov = _fov_of(image, fov)
    h, w = xfull.shape[:2]
    # --- every draw first, independent of strength ---
    n = int(rng.integers(2, 4))
    centres = rng.uniform(0.12, 0.88, n) * w
    max_widths = rng.uniform(1.0, 1.6, n) * w / n * 1.5
    depth_u = rng.uniform(0.0, 1.0, n)
    atten_db = rng.uniform(35.0, 60.0, n)
    echo = rng.uniform(0.75, 1.0, n)

    def model(x: np.ndarray) -> np.ndarray:
        lum = _echo_level(x)
        cols = np.arange(w, dtype=np.float64)
        rows = np.arange(h, dtype=np.float64)[:, None]
        penumbra = 1.0 + 0.01 * w
        pulse = max(1.0, 0.006 * h)
        loss_db = np.zeros((h, w))
        echo_line = np.zeros((h, w))
        for k in range(n):
            top = _tissue_top(lum, centres[k] - max_widths[k] / 2, centres[k] + max_widths[k] / 2)
            z_k = top + (0.03 + 0.22 * depth_u[k]) * (h - top)
            # the obstruction (a box of width s*W_k) seen through a Gaussian beam of width penumbra
            half_k, dx = strength * max_widths[k] / 2, np.abs(cols - centres[k])
            lateral = ndtr((half_k - dx) / penumbra) - ndtr((-half_k - dx) / penumbra)
            below = np.clip(rows - (z_k + 2.0 * pulse) + 0.5, 0.0, 1.0)  # distal to the reflector's echo
            loss_db += atten_db[k] * below * lateral[None, :]
            echo_line = np.maximum(echo_line, echo[k] * np.exp(-0.5 * ((rows - z_k) / pulse) ** 2) * lateral)
        # reflectors sit in tissue: no echo is drawn where the frame holds no signal
        echo_line *= np.clip(ndi.uniform_filter(lum, size=9) / 0.03, 0.0, 1.0)
        # the reflectors' echoes are part of the received signal: deeper ones are dimmed by shallower ones
        return np.maximum(x, echo_line[..., None]) - (loss_db / DYNAMIC_RANGE_DB)[..., None]

    change = scan_change(xfull, fov, model)
    out = xfull + change
    if occlusion is not None:  # amplitude lost along the beam: 6 dB = half the echo = opacity 0.5
        loss = np.clip(-change.mean(axis=2), 0.0, None) * DYNAMIC_RANGE_DB
        occlusion.append(np.where(fov, 1.0 - 10.0 ** (-loss / 20.0), 0.0))
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "us_reverberation",
    modalities=("ultrasound",),
    strength_range=(0.0, 32.0),
    description="reverberation: equally spaced, decaying replicas of a strong near-field reflector",
    ceiling=4.0, ceiling_note="replica gain <= 4: the first replica at most 4x the display level of the reflecting layer it copies (a metal or gas reflector in a dim layer); stronger replicas would outshine the reflector that makes them",
    side_effects=("smoothing",),
    side_effect_note="a strong replica masks the speckle of the tissue under it (the log display of a sum is dominated by the larger echo)",
)
def us_reverberation(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None
) -> np.ndarray:
    r"""Reverberation: decaying replicas of a strong reflector at multiples of its depth.

    **Physics.** When a pulse meets a strong specular reflector at depth :math:`d` (abdominal-wall fascia,
    pleura, a needle) part of the echo is reflected again by the transducer face and travels back down.
    The scanner, assuming one round trip, places the *k*-th extra round trip at depth :math:`z_0 + (k+1)D`
    (:math:`z_0` the skin line, :math:`D = d - z_0`):
    equally spaced copies of the reflector (A-lines), each weaker by the round-trip reflection loss
    :math:`\rho`, and axially smeared as the pulse disperses (Kremkau & Taylor 1986; Feldman et al. 2009;
    Szabo 2014, ch. 10).

    **Model.** The reflector depth :math:`d` is drawn from ``rng`` among the bright rows of the upper
    tissue (probability :math:`\propto` the row's mean echo level to the 6th power, between the skin
    line + 6 % and + 30 % of the depth); the reflecting layer is the echo
    band :math:`L(z, x) = v(z, x)\,\cos^2(\pi (z - d)/D)` (rows :math:`d \pm D/2`) within a
    lateral aperture :math:`a(x)` drawn from ``rng`` (centred on a quantile of the echo mass).
    Replica *k* is the band shifted by :math:`k D`,
    axially blurred by :math:`\sigma_k = \sigma_0\sqrt{k}`, with amplitude :math:`\rho^{k-1}`
    (:math:`\rho \in [0.55, 0.8]` from ``rng``):

    .. math:: A' = A + s \, a(x) \sum_{k \ge 1} \rho^{k-1} (L * g_{\sigma_k})(z - k D, x),
              \qquad v' = 20 \log_{10} A' / \mathrm{DR},

    with :math:`A = 10^{v\,\mathrm{DR}/20}` the echo amplitude (echoes add in amplitude, the display is
    log-compressed), the layer :math:`L` taken on :math:`A`, and the result clipped to the display range.
    :math:`s` is the echo gain of the reverberant path.

    **Reach.** The replicas copy the reflecting layer's own echoes; where that layer is dim and most of
    the frame is anechoic surround (the cardiac sector scan of the demo set) they saturate early. Within
    the ceiling (below) the stronger levels are often out of reach: measured in band on the demo test
    images (FOV SSIM, seed 0) L1-L2 100 %, L3 50 %, L4 33 %, L5 17 %, the misses ``reason = "ceiling"``.

    Ceiling: replica gain 4 -- the first replica at most 4x the display level of the reflecting layer it
    copies (a metal or gas reflector in a dim layer); stronger replicas would outshine the reflector that
    makes them.

    Parameters
    ----------
    image : numpy.ndarray
        Grey ``(H, W)`` or RGB ``(H, W, 3)``, ``uint8`` or ``uint16``.
    strength : float
        Reverberation gain :math:`s` (replica amplitude relative to the reflector's echo), ``[0, 32]``; large gains
        stand for a very strong reflector (metal, gas) in a dim layer.
    rng : numpy.random.Generator
        Source of every random draw (reflector depth, aperture, decay).

    Returns
    -------
    numpy.ndarray
        The image with reverberation, same dtype and shape.
    """
    xfull = _channels(to_float(image))
    fov = _fov_of(image, fov)
    u_depth, u_centre = rng.uniform(size=2)
    half_frac = rng.uniform(0.4, 0.6)
    rho = rng.uniform(0.55, 0.8)

    def model(x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        lum = _echo_level(x)
        half = half_frac * w
        col_mass = np.cumsum(lum.sum(axis=0) + 1e-6)
        centre = float(np.searchsorted(col_mass, (0.3 + 0.4 * u_centre) * col_mass[-1]))
        top = _tissue_top(lum, centre - half, centre + half)
        lo = int(top + 0.06 * (h - top))
        hi = max(lo + 1, int(top + 0.3 * (h - top)))
        a, b = int(max(0, centre - half)), int(min(w, centre + half))
        prof = x.mean(axis=2)[lo:hi, a:b].mean(axis=1) + 1e-3  # raw echoes: thin reflectors count
        cdf = np.cumsum(prof**6)  # reverberation needs a strong reflector: favour the brightest rows
        d = lo + float(np.searchsorted(cdf, u_depth * cdf[-1]))  # reflector depth (rows)
        gap = max(2.0, d - top)  # transducer-to-reflector distance = replica spacing
        rows = np.arange(h, dtype=np.float64)[:, None]
        band_w = np.cos(np.clip((rows - d) / gap, -0.5, 0.5) * np.pi) ** 2
        amp = 10.0 ** (x * DYNAMIC_RANGE_DB / 20.0)  # echo amplitude over the noise floor
        layer = amp * band_w[..., None]
        cols = np.arange(w, dtype=np.float64)
        aperture = np.clip((half - np.abs(cols - centre)) / (0.03 * w + 1.0), 0.0, 1.0)
        sigma0 = max(0.5, 0.004 * h)
        acc = np.zeros_like(x)
        k = 1
        while d + (k - 0.5) * gap < h and rho ** (k - 1) > 0.02:
            shifted = ndi.shift(layer, (k * gap, 0, 0), order=1, mode="constant", cval=0.0, prefilter=False)
            acc += rho ** (k - 1) * ndi.gaussian_filter1d(shifted, sigma0 * np.sqrt(k), axis=0)
            k += 1
        # echoes add in amplitude; the display is log-compressed
        return 20.0 * np.log10(amp + strength * acc * aperture[None, :, None]) / DYNAMIC_RANGE_DB

    out = xfull + scan_change(xfull, fov, model)
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "us_gain",
    modalities=("ultrasound",),
    strength_range=(0.0, 40.0),
    description="time-gain-compensation miscalibration: a smooth depth-dependent gain error in dB",
    ceiling=30.0,
    ceiling_note="RMS TGC error <= 30 dB: every slider at an end stop, a gain error of half the 60 dB display "
    "range at every depth; a larger error would push all echoes off the display (black or white) at every depth",
    side_effects=("smoothing", "zeroed"), side_effect_note="a gain too low at depth drops weak echoes below the display floor"
    "; drop-out to black removes the speckle with the echoes",
)
def us_gain(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None
) -> np.ndarray:
    r"""Depth-dependent gain (TGC) miscalibration.

    **Physics.** Echoes from depth :math:`z` are attenuated by :math:`2\alpha f z` dB (round trip;
    :math:`\alpha \approx 0.5` dB/cm/MHz in soft tissue). The scanner compensates with a time-gain
    curve set by a bank of slide controls at equally spaced depths; wrongly set sliders or a wrong
    attenuation assumption leave horizontal bands that are too bright or too dark, and a depth ramp
    (Szabo 2014, ch. 8; Feldman et al. 2009).

    **Model.** Eight slider errors :math:`u_j \sim \mathcal N(0,1)` at equally spaced depths plus a
    linear ramp :math:`u_r z/H` (both from ``rng``) are interpolated with a cubic spline and normalised
    to unit RMS over depth, :math:`\langle\delta^2\rangle_z = 1`. The gain error is :math:`G(z) = s\,\delta(z)` dB, which in the
    log-compressed display shifts each depth along the scan lines, inside the sector only:
    :math:`v' = \mathrm{clip}(v + G(z)/\mathrm{DR}, 0, 1)`. Lowering the gain drives weak deep echoes
    below the display floor (black): that drop-out is the artifact, declared as such.

    Ceiling: RMS gain error 30 dB -- every slider at an end stop, a gain error of half the 60 dB display range
    at every depth; a larger error would push all echoes off the display (black or white) at every depth.

    Parameters
    ----------
    image : numpy.ndarray
        Grey ``(H, W)`` or RGB ``(H, W, 3)``, ``uint8`` or ``uint16``.
    strength : float
        RMS gain error :math:`s` in dB over depth, ``[0, 40]``.
    rng : numpy.random.Generator
        Source of the slider errors and the ramp.

    Returns
    -------
    numpy.ndarray
        The image with the gain error, same dtype and shape.
    """
    xfull = _channels(to_float(image))
    fov = _fov_of(image, fov)
    sliders = rng.standard_normal(8)
    ramp = rng.standard_normal()
    knots = np.linspace(0.0, 1.0, 8)

    def model(x: np.ndarray) -> np.ndarray:
        z = np.linspace(0.0, 1.0, x.shape[0])
        delta = CubicSpline(knots, sliders, bc_type="natural")(z) + ramp * (z - 0.5) * 2.0
        delta = delta / max(float(np.sqrt(np.mean(delta**2))), 1e-9)
        return x + (strength * delta / DYNAMIC_RANGE_DB)[:, None, None]

    out = xfull + scan_change(xfull, fov, model)
    return from_float(out.reshape(image.shape), image.dtype)
