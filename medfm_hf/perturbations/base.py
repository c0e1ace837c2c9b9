"""The 14 base perturbations: generic acquisition, transmission and geometry corruptions for every modality.

Each is a deterministic function of ``(image, strength, rng)`` following the contract in
:mod:`medfm_hf.perturbations.registry`: every random draw is made first and in the same way whatever
the strength (the strength only scales what was drawn); intensities are handled in the dtype's range
(``uint8``: 0-255, ``uint16``: 0-65535) -- never a per-image min-max; the output is clipped, rounded and
returned in the input's dtype and shape. ``rotate``, ``scale`` and ``translate`` move content and take
``mask=``: the mask follows with the same affine map, nearest neighbour.

The corruption models follow Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019, with a continuous strength instead of five fixed severities
(the calibrator picks the strength per image).

The smoothing floor. The blurs, ``pixelate`` and ``contrast`` keep the mean and remove structure; their
limit is the flat image at the mean, and SSIM cannot fall below ``SSIM(x, mean(x))`` (up to a little
overshoot of pixelation). On the demo test set at 256 px that floor (SSIM over the field of view) is
0.67-0.69 on all six endoscopy frames, 0.65-0.73 on all six fundus photographs, 0.61 on four smooth
dermoscopy crops and 0.64 on one CT slice, so level 5 (and level 4 on two fundus images) is out of
reach there: at most 43/60 = 71.7 % of the images reach level 5 with these perturbations, whatever
their strength.

Physical ceilings. Every perturbation declares the strongest physically plausible strength
(``ceiling`` in the registry, a ``Ceiling:`` paragraph in its docstring, the reasons below in
``_*_NOTE``); the calibrator never goes beyond it and reports a band it cannot reach within it as
``in_band = False, reason = "ceiling"``. Strengths in pixels (the blurs, ``pixelate``, ``translate``)
refer to the demo's 256 px frames and are not rescaled with the image size: on a larger image the same
ceiling is a smaller fraction of the frame. Measured on the 60 demo test images (FOV SSIM, seed 0), the
ceilings take the 14 perturbations from 3878/4020 cells in band (96.5 %) to 3675/4020 (91.4 %); level 5
from 688/804 to 597/804. JPEG loses most (quality >= 10: level 5 on 9/60 images instead of 37/60).
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

from medfm_hf.perturbations.registry import (
    ALL,
    PerturbationError,
    from_float,
    register_perturbation,
    to_float,
)

# ---------------------------------------------------------------------------------------------- helpers


def _as_float32(image: np.ndarray) -> np.ndarray:
    """Image in [0, 1] as float32 (enough precision for 16-bit data; cv2 filters are fast on it)."""
    return to_float(image).astype(np.float32)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with ``kernel`` (reflect border), returned in the input's dtype."""
    out = cv2.filter2D(_as_float32(image), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return from_float(out.astype(np.float64), image.dtype)


def _warp(
    image: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the 2x3 affine ``matrix`` to the image (bilinear) and the mask (nearest), zero outside."""
    h, w = image.shape[:2]
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    moved = None
    if mask is not None:
        moved = cv2.warpAffine(
            mask.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        ).astype(bool)
    return out.reshape(image.shape), moved


def _centre(image: np.ndarray) -> tuple[float, float]:
    h, w = image.shape[:2]
    return (w - 1) / 2.0, (h - 1) / 2.0


# --------------------------------------------------------------------------------------------- ceilings
# The strongest physically plausible strength of each perturbation (registry ``ceiling``; the docstrings
# repeat each note in their ``Ceiling:`` paragraph). Strengths in pixels refer to the demo's 256 px frames:
# they are not rescaled with the image size, so on larger images the same ceiling is a milder artifact.

_NOISE_NOTE = (
    "sigma <= 0.2 of the range: the noisiest acquisitions still read; CT at ~2 % of a standard dose "
    "(ct_photon_starvation's ceiling) has ~7x the noise, ~70-80 HU, 0.2 of a 400 HU soft-tissue window; "
    "a mid-grey pixel then has SNR 2.5 and a 2-sigma excursion spans most of the range"
)
_IMPULSE_NOTE = (
    "<= 5 % of the pixels: a detector read without its defect-map correction (flat-panel acceptance allows "
    "~0.1-1 % defective pixels, all interpolated) several times over, or a corrupted transmission; bit errors "
    "at a link's typical rate of 1e-4 hit < 0.1 % of the pixels"
)
_SPECKLE_NOTE = (
    "sigma <= 1: fully developed speckle in single-look intensity has contrast std/mean = 1 (Goodman 2007), "
    "the most a coherent image carries; amplitude (Rayleigh) speckle has 0.52, log-compressed displays less"
)
_GAUSS_BLUR_NOTE = (
    "sigma <= 8 px at 256 px (FWHM 19 px, 7 % of the frame side): the coarsest images read clinically resolve "
    "~30 elements across their field (SPECT, ~10-12 mm FWHM over 400 mm; far-field ultrasound); 14 across "
    "the frame allows for crops that show part of a field; the median demo lesion (~37 px) stays a blob"
)
_MOTION_NOTE = (
    "path <= 32 px at 256 px (1/8 of the frame side): an endoscope tip swept across a whole field in ~0.13 s "
    "moves 1/8 of it during a 1/60 s exposure, the fastest motion a read frame shows; patient motion in a "
    "<= 100 ms radiograph is < 1 % of the field; the path is then the median demo lesion's size (~37 px)"
)
_DEFOCUS_NOTE = (
    "disk radius <= 16 px at 256 px (diameter 1/8 of the frame side): the RMS width (radius / 2 = 8 px) of "
    "gaussian_blur's ceiling; a fundus camera 10 D out of focus blurs over ~5 % of its 45-degree field "
    "(4 mm pupil x 10 D = 0.04 rad), the ceiling allows 2.5x that for crops"
)
_JPEG_NOTE = (
    "quality >= 10: guidelines for irreversible compression of diagnostic images accept ~8:1-30:1 by "
    "modality (Koff et al. 2009, the Canadian Association of Radiologists' standard), web and phone exports "
    "use quality >= ~50; quality 10 already compresses the demo's 8-bit images 14-95:1 (medians per modality; "
    "CT 27:1, X-ray 34:1), "
    "below it the 8x8 blocks show at reading distance"
)
_PIXELATE_NOTE = (
    "blocks <= 16 px at 256 px (16 across the frame): the resolution limit of gaussian_blur's ceiling; "
    "the coarsest matrices read clinically (64 x 64 nuclear medicine) shown on a crop of a quarter of "
    "their field"
)
_CONTRAST_NOTE = (
    "contrast >= 10 % of the original: the strongest real contrast losses, scatter at a scatter-to-primary "
    "ratio of 10 without a grid (1/11 of the contrast left, xray_scatter's ceiling) or a dense cataract "
    "(14 %, fundus_haze's); 10 % of an 8-bit range still spans ~25 grey levels and is read after "
    "re-windowing; strength 1 is a flat image"
)
_BRIGHTNESS_NOTE = (
    "shift <= half the range: a window level off by half the window width, or a 4-stop exposure error "
    "(1.2 decades, ~0.4 of a 3-decade log display, xray_exposure's ceiling); half the grey scale is then "
    "clipped and the other half still shows the anatomy"
)
_SATURATION_NOTE = (
    "chroma boost <= 3x: a white-balance or colour-matrix error, or a camera's saturation setting at its "
    "end stop, roughly doubles chroma; 3x is past all of them (skin and mucosa cartoon-coloured, bright "
    "channels clipped)"
)
_ROTATE_NOTE = (
    "60 degrees, the range's top: an endoscope turns freely about its axis and a slide or a skin lesion has "
    "no canonical orientation, so any angle is physical there; the range stops at 60 because SSIM is no "
    "longer monotone beyond; patient rotation in CT/MR/X-ray stays within ~15-20 degrees, but one ceiling "
    "serves all modalities"
)
_SCALE_NOTE = (
    "a factor 4 either way, the range's top: ultrasound depth settings from 4 to 16 cm, a 10x or a 40x "
    "objective on the same slide, a CT display field of 125 or 500 mm are all read"
)
_TRANSLATE_NOTE = (
    "shift <= 64 px at 256 px (a quarter of the frame side): a region of interest off-centre by a quarter of "
    "the field (collimation ~10 cm off on a 43 cm radiograph, a lesion at the edge of the dermatoscope's "
    "field) is still in the frame; larger offsets lose the target and the image is retaken or re-cropped"
)


# ------------------------------------------------------------------------------------------------ noise


@register_perturbation(
    "gaussian_noise", modalities=ALL, strength_range=(0.0, 0.5),
    description="additive Gaussian noise, sigma as a fraction of the dtype's range, clipped",
    ceiling=0.2, ceiling_note=_NOISE_NOTE,
    side_effects=("saturated", "zeroed"), side_effect_note="noise clipped at the ends of the range, as a detector's ADC clips it",
)
def gaussian_noise(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise (electronic/thermal read-out noise).

    ``y = clip(x + strength * n)`` with ``x`` in [0, 1] of the dtype's range and ``n ~ N(0, 1)`` drawn
    once per pixel and channel.

    Ceiling: strength <= 0.2 (sigma <= 0.2 of the range: the noisiest acquisitions still read; CT at ~2 % of
    a standard dose (ct_photon_starvation's ceiling) has ~7x the noise, ~70-80 HU, 0.2 of a 400 HU
    soft-tissue window; a mid-grey pixel then has SNR 2.5 and a 2-sigma excursion spans most of the range).
    """
    noise = rng.standard_normal(image.shape)
    return from_float(to_float(image) + strength * noise, image.dtype)


@register_perturbation(
    "salt_pepper", modalities=ALL, strength_range=(0.0, 0.6),
    description="impulse noise: a fraction of pixels set to black or white",
    ceiling=0.05, ceiling_note=_IMPULSE_NOTE,
)
def salt_pepper(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Impulse (salt-and-pepper) noise from dead/hot detector elements or transmission bit errors.

    Each pixel draws ``u ~ U(0, 1)`` and a colour (black or white, equally likely); pixels with
    ``u < strength`` are replaced, so a stronger setting corrupts a superset of the pixels.

    Ceiling: strength <= 0.05 (<= 5 % of the pixels: a detector read without its defect-map correction
    (flat-panel acceptance allows ~0.1-1 % defective pixels, all interpolated) several times over, or a
    corrupted transmission; bit errors at a link's typical rate of 1e-4 hit < 0.1 % of the pixels).
    """
    u = rng.random(image.shape[:2])
    white = rng.random(image.shape[:2]) < 0.5
    out = image.copy()
    hit = u < strength
    out[hit & white] = np.iinfo(image.dtype).max
    out[hit & ~white] = 0
    return out


@register_perturbation(
    "speckle_noise", modalities=ALL, strength_range=(0.0, 4.0),
    description="multiplicative Gaussian noise (speckle), sigma",
    ceiling=1.0, ceiling_note=_SPECKLE_NOTE,
    side_effects=("saturated", "zeroed"), side_effect_note="noise clipped at the ends of the range, as a detector's ADC clips it",
)
def speckle_noise(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise ``y = clip(x * (1 + strength * n))``, ``n ~ N(0, 1)``.

    A first-order model of coherent-imaging speckle (Goodman, *Speckle Phenomena in Optics*, 2007):
    the noise scales with the signal, so dark background stays dark.

    Ceiling: strength <= 1 (sigma <= 1: fully developed speckle in single-look intensity has contrast
    std/mean = 1 (Goodman 2007), the most a coherent image carries; amplitude (Rayleigh) speckle has 0.52,
    log-compressed displays less).
    """
    noise = rng.standard_normal(image.shape)
    x = to_float(image)
    return from_float(x * (1.0 + strength * noise), image.dtype)


# ------------------------------------------------------------------------------------------------- blur


@register_perturbation(
    "gaussian_blur", modalities=ALL, strength_range=(0.0, 64.0),
    description="Gaussian point-spread function, sigma in pixels",
    ceiling=8.0, ceiling_note=_GAUSS_BLUR_NOTE,
    side_effects=("smoothing",), side_effect_note="a blur removes fine structure and noise",
)
def gaussian_blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Blur by a Gaussian point-spread function of standard deviation ``strength`` pixels.

    Models a system PSF / finite detector resolution. Reflect border; no random draws.

    Severity: within the ceiling (``sigma = 8``), on the 60 demo test images at 256 px level 4 is reached
    on 48 and level 5 on 34 (with the range's top, 64: 53 and 42, the rest at the smoothing floor of the
    module docstring); the misses are mostly smooth frames (endoscopy, fundus, dermoscopy, X-ray).

    Ceiling: strength <= 8 (sigma <= 8 px at 256 px (FWHM 19 px, 7 % of the frame side): the coarsest images
    read clinically resolve ~30 elements across their field (SPECT, ~10-12 mm FWHM over 400 mm; far-field
    ultrasound); 14 across the frame allows for crops that show part of a field; the median demo lesion (~37
    px) stays a blob).
    """
    del rng
    out = cv2.GaussianBlur(
        _as_float32(image), (0, 0), sigmaX=float(strength), sigmaY=float(strength),
        borderType=cv2.BORDER_REFLECT_101,
    )
    return from_float(out.astype(np.float64).reshape(image.shape), image.dtype)


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised line PSF of ``length`` pixels at ``angle_deg``, anti-aliased (continuous in length).

    The segment is sampled densely and each sample splats bilinearly onto the pixel grid.
    """
    half = length / 2.0
    radius = int(math.ceil(half)) + 1
    size = 2 * radius + 1
    k = np.zeros((size, size), np.float64)
    n = max(2, int(math.ceil(length * 4)) + 1)
    t = np.linspace(-half, half, n)
    theta = math.radians(angle_deg)
    xs = radius + t * math.cos(theta)
    ys = radius - t * math.sin(theta)
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx = xs - x0
    fy = ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), wgt)
    return k / k.sum()


@register_perturbation(
    "motion_blur", modalities=ALL, strength_range=(0.0, 512.0),
    description="linear motion PSF at a seeded angle, length in pixels",
    ceiling=32.0, ceiling_note=_MOTION_NOTE,
    side_effects=("smoothing",), side_effect_note="a blur removes fine structure and noise",
)
def motion_blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Blur by uniform linear motion during the exposure (patient or camera motion).

    The direction is drawn once, ``angle ~ U(0, 180)`` degrees; ``strength`` is the path length in
    pixels. The PSF is a line segment (Hendrycks & Dietterich 2019, "motion blur").

    Severity: a linear PSF averages along one direction only, so smooth images along the drawn angle
    need paths longer than the image to reach the strong bands (the range goes to 512 px, twice a
    256 px image). Within the ceiling (32 px) on the 60 demo test images level 3 is reached on 58, level
    4 on 42, level 5 on 30 (with the range's top: 60, 55, 43); the misses are mostly smooth frames
    (endoscopy, fundus, dermoscopy, X-ray).

    Ceiling: strength <= 32 (path <= 32 px at 256 px (1/8 of the frame side): an endoscope tip swept across
    a whole field in ~0.13 s moves 1/8 of it during a 1/60 s exposure, the fastest motion a read frame
    shows; patient motion in a <= 100 ms radiograph is < 1 % of the field; the path is then the median demo
    lesion's size (~37 px)).
    """
    angle = float(rng.uniform(0.0, 180.0))
    return _filter(image, motion_kernel(float(strength), angle))


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised disk PSF of ``radius`` pixels with an anti-aliased edge (continuous in radius)."""
    r = int(math.ceil(radius)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    return k / k.sum()


@register_perturbation(
    "defocus_blur", modalities=ALL, strength_range=(0.0, 128.0),
    description="disk (defocus) PSF, radius in pixels",
    ceiling=16.0, ceiling_note=_DEFOCUS_NOTE,
    side_effects=("smoothing", "affine"), side_effect_note="a blur removes fine structure and noise; a wide disk over a smooth frame leaves little but the local mean, which an affine map of the clean image approximates",
)
def defocus_blur(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Blur by an out-of-focus lens: the geometric-optics PSF is a uniform disk of radius ``strength``.

    No random draws. (Hendrycks & Dietterich 2019, "defocus blur".)

    Severity: the range goes to a radius of 128 px (half a 256 px image). Within the ceiling (16 px) on
    the 60 demo test images level 4 is reached on 50 and level 5 on 35 (with the range's top: 54 and 43,
    the rest at the smoothing floor of the module docstring).

    Ceiling: strength <= 16 (disk radius <= 16 px at 256 px (diameter 1/8 of the frame side): the RMS width
    (radius / 2 = 8 px) of gaussian_blur's ceiling; a fundus camera 10 D out of focus blurs over ~5 % of its
    45-degree field (4 mm pupil x 10 D = 0.04 rad), the ceiling allows 2.5x that for crops).
    """
    del rng
    return _filter(image, disk_kernel(float(strength)))


# ------------------------------------------------------------------------------------------ compression


# IJG / libjpeg base quantisation tables (ITU-T T.81 Annex K, tables K.1 and K.2), natural order.
_JPEG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)
_JPEG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32, dtype=np.float64)


def jpeg_quality(strength: float) -> float:
    """JPEG quality used for ``strength``: ``100 - strength`` clipped to 1-100 (real-valued)."""
    return min(100.0, max(1.0, 100.0 - float(strength)))


def jpeg_tables(quality: float) -> list[list[int]]:
    """Baseline quantisation tables (luma, chroma) for a real-valued ``quality`` (IJG scaling).

    libjpeg scales the Annex K tables by ``5000 / q`` (``q < 50``) or ``200 - 2 q`` and rounds each
    step to an integer in 1-255 (8-bit baseline). Using the real-valued scale (libjpeg truncates it to
    an integer) lets the steps grow one at a time between integer qualities, so SSIM falls in small steps
    instead of jumping; at ``quality = 1`` every step is at the baseline maximum, 255.
    """
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return [np.clip(np.floor((t * scale + 50.0) / 100.0), 1, 255).astype(int).tolist() for t in (_JPEG_LUMA, _JPEG_CHROMA)]


def _jpeg8(image8: np.ndarray, quality: float) -> np.ndarray:
    """JPEG round trip of an 8-bit image through libjpeg (Pillow) with :func:`jpeg_tables` (4:2:0 chroma)."""
    luma, chroma = jpeg_tables(quality)
    buf = io.BytesIO()
    if image8.ndim == 3:
        Image.fromarray(image8).save(buf, "JPEG", qtables=[luma, chroma], subsampling=2)
    else:
        Image.fromarray(image8).save(buf, "JPEG", qtables=[luma])
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


@register_perturbation(
    "jpeg", modalities=ALL, strength_range=(0.0, 99.0),
    description="JPEG round trip at quality 100 - strength (real-valued IJG table scaling)",
    ceiling=90.0, ceiling_note=_JPEG_NOTE,
    side_effects=("smoothing", "zeroed"),
    side_effect_note="quantised DCT coefficients remove fine structure and noise; their overshoot clips flat dark blocks at zero",
)
def jpeg(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Lossy JPEG compression (baseline DCT, 4:2:0 chroma for colour) at quality ``100 - strength``.

    The quality sets the quantisation steps of the DCT coefficients through libjpeg's scaling of the
    standard tables, evaluated with a real-valued quality (:func:`jpeg_tables`), so the steps grow
    gradually rather than in integer-quality jumps. JPEG is 8-bit: a ``uint16`` image is compressed
    through its 8-bit version and the compression error is added back at 16-bit scale
    (``y = x + 257 * (jpeg(x8) - x8)``), so its fine bits survive where JPEG changed nothing.

    Severity: quality 1 (``strength`` 99) is the strongest compression baseline 8-bit JPEG can express
    (every quantisation step 255; ITU-T T.81 allows no larger table entry for 8-bit samples). On smooth
    or low-contrast images (CT, X-ray, ultrasound, endoscopy, fundus crops) SSIM bottoms out there at
    0.61-0.86, so the stronger levels are out of reach on them. The physical ceiling is quality 10
    (below): within it, on the 60 demo test images at 256 px (FOV SSIM), level 2 is reached on 55,
    level 3 on 41, level 4 on 21, level 5 on 9 (down to quality 1: 60, 60, 56, 37). Medical images
    compress well, so at the compression actually used the strong levels are out of reach on most of
    them (16 of the 18 CT, MR and X-ray images miss level 3 already); that is honest data.
    On images with an exactly black background (CT air) SSIM is not monotone in the quality: a black
    block's DC coefficient (-1024 after the level shift) comes back as a multiple of the DC step, so the
    background either stays at 0 or is lifted by a few grey levels depending on the step (one CT slice:
    SSIM 0.33 at quality 5, 0.70 at quality 1). That is how JPEG behaves, and it is left as it is.

    Ceiling: strength <= 90 (quality >= 10: guidelines for irreversible compression of diagnostic images
    accept ~8:1-30:1 by modality (Koff et al. 2009, the Canadian Association of Radiologists' standard), web
    and phone exports use quality >= ~50; quality 10 already compresses the demo's 8-bit images 14-95:1
    (medians per modality; CT 27:1, X-ray 34:1), below it the 8x8 blocks show at reading distance).
    """
    del rng
    q = jpeg_quality(strength)
    if image.dtype == np.uint8:
        return _jpeg8(image, q)
    x8 = np.rint(image.astype(np.float64) / 257.0).astype(np.uint8)
    err = _jpeg8(x8, q).astype(np.int64) - x8.astype(np.int64)
    return np.clip(image.astype(np.int64) + 257 * err, 0, 65535).astype(np.uint16)


def _block_labels(n: int, block: float) -> np.ndarray:
    """Block index of each of ``n`` pixels for blocks of (real) size ``block`` anchored at the centre."""
    centre = n / 2.0
    return np.floor((np.arange(n) + 0.5 - centre) / block).astype(np.int64)


@register_perturbation(
    "pixelate", modalities=ALL, strength_range=(0.0, 63.0),
    description="pixel blocks of size 1 + strength (block mean), i.e. area down- and nearest up-sampling",
    ceiling=15.0, ceiling_note=_PIXELATE_NOTE,
    side_effects=("smoothing",), side_effect_note="block means remove fine structure and noise",
)
def pixelate(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss: every block of ``1 + strength`` pixels (real-valued) replaced by its mean.

    Equivalent to area down-sampling by ``1 + strength`` and nearest-neighbour up-sampling, with the
    block grid anchored at the image centre; because the block size is real-valued, a slightly larger
    strength merges a few more pixels (SSIM falls gradually instead of jumping). No random draws.

    Severity: within the ceiling (blocks of 16 px) on the 60 demo test images level 4 is reached on 56
    and level 5 on 42 (with blocks up to 64 px: 58 and 45, the rest at the smoothing floor of the module
    docstring). Near the floor SSIM is not monotone in the block size (it dips just below the floor and
    comes back).

    Ceiling: strength <= 15 (blocks <= 16 px at 256 px (16 across the frame): the resolution limit of
    gaussian_blur's ceiling; the coarsest matrices read clinically (64 x 64 nuclear medicine) shown on a
    crop of a quarter of their field).
    """
    del rng
    h, w = image.shape[:2]
    block = 1.0 + float(strength)
    ry, rx = _block_labels(h, block), _block_labels(w, block)
    ry -= ry.min()
    rx -= rx.min()
    nx = int(rx.max()) + 1
    labels = (ry[:, None] * nx + rx[None, :]).ravel()
    nblocks = (int(ry.max()) + 1) * nx
    counts = np.bincount(labels, minlength=nblocks).astype(np.float64)
    x = image.reshape(h * w, -1).astype(np.float64)
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        means = np.bincount(labels, weights=x[:, c], minlength=nblocks) / counts
        out[:, c] = means[labels]
    top = float(np.iinfo(image.dtype).max)
    return np.clip(np.rint(out), 0, top).astype(image.dtype).reshape(image.shape)


# ----------------------------------------------------------------------------------------- intensities


@register_perturbation(
    "contrast", modalities=ALL, strength_range=(0.0, 1.0),
    description="contrast shrunk toward the channel mean by a factor 1 - strength",
    ceiling=0.9, ceiling_note=_CONTRAST_NOTE,
    side_effects=("smoothing", "affine"), side_effect_note="contrast loss is an affine map; it scales noise with the signal",
)
def contrast(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast loss ``y = m + (1 - strength) (x - m)``, ``m`` the image's mean per channel.

    (Low-dose or mis-windowed acquisitions; Hendrycks & Dietterich 2019, "contrast".) No random draws.

    Severity: ``strength = 1`` is the flat image at the mean, the smoothing floor of the module
    docstring; the ceiling keeps 10 % of the contrast. Within it, on the 60 demo test images (FOV
    SSIM), level 4 is reached on 47 and level 5 on 36 (with the range's top: 58 and 43); endoscopy and
    fundus miss both, dermoscopy and two CT, X-ray and angiography images level 5.

    Ceiling: strength <= 0.9 (contrast >= 10 % of the original: the strongest real contrast losses, scatter
    at a scatter-to-primary ratio of 10 without a grid (1/11 of the contrast left, xray_scatter's ceiling)
    or a dense cataract (14 %, fundus_haze's); 10 % of an 8-bit range still spans ~25 grey levels and is
    read after re-windowing; strength 1 is a flat image).
    """
    del rng
    x = to_float(image)
    m = x.mean(axis=(0, 1), keepdims=True)
    return from_float(m + (1.0 - strength) * (x - m), image.dtype)


@register_perturbation(
    "brightness", modalities=ALL, strength_range=(0.0, 1.0),
    description="additive brightness shift (seeded sign), fraction of the range, clipped",
    ceiling=0.5, ceiling_note=_BRIGHTNESS_NOTE,
    side_effects=("saturated", "zeroed", "smoothing", "affine"), side_effect_note="a brightness shift is an affine map clipped at the range ends; clipping flattens what it clips",
)
def brightness(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure / gain offset: ``y = clip(x + sign * strength)``, ``sign`` drawn once (+1 or -1).

    ``strength`` is the shift as a fraction of the stored range (``uint8``: 255; 12-bit data: 4095).

    Ceiling: strength <= 0.5 (shift <= half the range: a window level off by half the window width, or a
    4-stop exposure error (1.2 decades, ~0.4 of a 3-decade log display, xray_exposure's ceiling); half the
    grey scale is then clipped and the other half still shows the anatomy).
    """
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return from_float(to_float(image) + sign * strength, image.dtype)


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights


@register_perturbation(
    "saturation", modalities=ALL, strength_range=(0.0, 30.0), colour_only=True,
    description="colour saturation boosted by a factor 1 + strength (away from the luma grey); colour only",
    ceiling=2.0, ceiling_note=_SATURATION_NOTE,
    side_effects=("saturated", "affine", "smoothing"),
    side_effect_note="a global colour map (like brightness/contrast); boosted channels clip at the range ends"
    "; a channel clipped over most of the frame loses its texture with it (as brightness's clipping does)",
)
def saturation(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Over-saturated colour (camera colour processing / white-balance gain); colour images only.

    ``y = clip(g + (1 + strength) (x - g))`` with ``g`` the pixel's BT.601 luma: the saturation factor
    of PIL's ``ImageEnhance.Color`` and torchvision's ``adjust_saturation``. Unlike scaling HSV ``S``,
    which stops at ``S = 1`` and leaves already saturated images (fundus) unchanged, this keeps growing
    until the channels clip, so the severity bands stay reachable. Only boosting is used: desaturation
    is bounded (grey) and too mild in SSIM to reach the stronger levels. No random draws.

    Severity: within the ceiling (3x chroma) on the 24 colour demo test images level 3 is reached on 19,
    levels 4 and 5 on 13 each (with the range's top, 31x: all 24); the muted H&E tiles and dermoscopy
    crops miss them.

    Ceiling: strength <= 2 (chroma boost <= 3x: a white-balance or colour-matrix error, or a camera's
    saturation setting at its end stop, roughly doubles chroma; 3x is past all of them (skin and mucosa
    cartoon-coloured, bright channels clipped)).
    """
    del rng
    if image.ndim != 3:
        raise PerturbationError("saturation applies to colour (H, W, 3) images only; got a grey image")
    x = to_float(image)
    grey = (x @ _LUMA)[..., None]
    return from_float(grey + (1.0 + float(strength)) * (x - grey), image.dtype)


# ------------------------------------------------------------------------------------------- geometric


@register_perturbation(
    "rotate", modalities=ALL, strength_range=(0.0, 60.0), geometric=True,
    description="rotation about the centre by strength degrees (seeded sign); mask and boxes follow",
    ceiling=60.0, ceiling_note=_ROTATE_NOTE,
    side_effects=("saturated", "smoothing", "zeroed"), side_effect_note="content leaving the frame is replaced by zeros; bilinear resampling smooths pixel-level noise"
    "; bright content (bone) moves into parts of the FOV that were darker",
)
def rotate(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Patient/probe rotation: rotate about the image centre by ``sign * strength`` degrees.

    ``sign`` is drawn once; bilinear for the image, nearest neighbour for the mask; zero outside.

    Severity: up to 60 degrees (was 45, where a near-symmetric CT slice stopped at SSIM 0.61). Beyond
    that SSIM is no longer monotone (a square frame rotated by 90 degrees loses its zero-filled corners,
    a body cross-section rotated by 180 degrees nearly matches itself; already between 45 and 90 degrees
    SSIM rises on a third of the demo images, though below level 5's band). Endoscopy frames (a
    round field of view over smooth mucosa) level off at FOV SSIM 0.61-0.66 once all detail is
    decorrelated. Measured at 256 px (FOV SSIM): level 4 on 60/60, level 5 on 54/60 demo test images
    (the six endoscopy frames miss it).

    Ceiling: strength <= 60 (60 degrees, the range's top: an endoscope turns freely about its axis and a
    slide or a skin lesion has no canonical orientation, so any angle is physical there; the range stops at
    60 because SSIM is no longer monotone beyond; patient rotation in CT/MR/X-ray stays within ~15-20
    degrees, but one ceiling serves all modalities).
    """
    sign = 1.0 if rng.random() < 0.5 else -1.0
    m = cv2.getRotationMatrix2D(_centre(image), sign * float(strength), 1.0)
    return _warp(image, m, mask)


@register_perturbation(
    "scale", modalities=ALL, strength_range=(0.0, 3.0), geometric=True,
    description="zoom in by 1 + strength or out by 1 / (1 + strength) (seeded); mask and boxes follow",
    ceiling=3.0, ceiling_note=_SCALE_NOTE,
    side_effects=("saturated", "zeroed", "smoothing", "affine"),
    side_effect_note="content moves into and out of the FOV (bright or black areas enter it); bilinear resampling smooths pixel-level noise; a strong zoom into a smooth frame leaves one magnified smooth region, close to a constant",
)
def scale(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Field-of-view / magnification change: zoom about the centre.

    The direction (in: factor ``1 + strength``; out: ``1 / (1 + strength)``) is drawn once.

    Ceiling: strength <= 3 (a factor 4 either way, the range's top: ultrasound depth settings from 4 to 16
    cm, a 10x or a 40x objective on the same slide, a CT display field of 125 or 500 mm are all read).
    """
    zoom_in = rng.random() < 0.5
    f = 1.0 + float(strength)
    m = cv2.getRotationMatrix2D(_centre(image), 0.0, f if zoom_in else 1.0 / f)
    return _warp(image, m, mask)


@register_perturbation(
    "translate", modalities=ALL, strength_range=(0.0, 256.0), geometric=True,
    description="shift by strength pixels (at most half the image) in a seeded direction; mask and boxes follow",
    ceiling=64.0, ceiling_note=_TRANSLATE_NOTE,
    side_effects=("saturated", "smoothing", "zeroed"), side_effect_note="content leaving the frame is replaced by zeros; bilinear resampling smooths pixel-level noise"
    "; bright content (bone) moves into parts of the FOV that were darker",
)
def translate(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Patient positioning offset: shift by ``strength`` pixels along a direction drawn once.

    ``angle ~ U(0, 2 pi)``; sub-pixel shifts are bilinear; zero fills what comes in. The shift is
    capped at half the image's shorter side (beyond it the image would leave the field of view and
    SSIM would stop falling); larger strengths give that maximal shift.

    Ceiling: strength <= 64 (shift <= 64 px at 256 px (a quarter of the frame side): a region of interest
    off-centre by a quarter of the field (collimation ~10 cm off on a 43 cm radiograph, a lesion at the edge
    of the dermatoscope's field) is still in the frame; larger offsets lose the target and the image is
    retaken or re-cropped).
    """
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    dist = min(float(strength), 0.5 * min(image.shape[:2]))
    dx, dy = dist * math.cos(angle), dist * math.sin(angle)
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return _warp(image, m, mask)
