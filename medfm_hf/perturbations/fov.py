"""The field of view (FOV): where an image holds acquired signal, per modality.

A perturbation models a change in the *acquisition*; the calibration measures it where there is
signal. Every record carries a boolean ``fov`` mask (stored in the dataset); a source may supply its
own (``Record.fov``), otherwise :func:`detect_fov` derives it from the image:

=============================  ==========================================================================
modality                       FOV
=============================  ==========================================================================
ct, mri                        the body: the largest connected region above the air level (2 % of the
                               range for CT windows, 8 % of the 99th percentile for MRI noise) after a
                               3x3 median, opened, closed, holes filled
xray                           the exposed field: border bands that are flat (collimator blades, shutters;
                               local standard deviation < 0.5 % of the range over >= 97 % of the band) are
                               cut off, the rest is the field
ultrasound                     the image region(s) (sector, convex or linear; one per panel of a dual
                               display): signal after removing overlays, opened to drop thin text and ECG
                               traces, components >= 10 % of the largest, convex hull each; burned-in
                               overlays (saturated, coloured; low wide strips such as ECG
                               panels) are excluded
fundus, endoscopy, dermoscopy  the circular aperture: the largest region brighter than the dark surround,
                               holes filled, convex hull; the whole frame when the surround is < 3 %
pathology                      tissue (not glass): optical density or colour saturation above the glass
                               level, closed, small specks removed, holes filled; the whole frame when the
                               tile is nearly all tissue
oct, angiography               the whole frame (the dark vitreous / background is acquired signal)
=============================  ==========================================================================

Each detector falls back to the whole frame when it finds less than 5 % of the image (a detector
that fails must not shrink the measured area to noise). :func:`scan_geometry` describes the ultrasound
scan lines inside an FOV (apex and angles for a sector, columns for a linear probe), which the
ultrasound perturbations follow.

>>> import numpy as np
>>> img = np.zeros((64, 64), np.uint8); img[16:48, 12:52] = 120
>>> fov = detect_fov(img, "ct")
>>> bool(fov[32, 32]), bool(fov[2, 2])
(True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = ["FOV_MODALITY_RULES", "ScanGeometry", "detect_fov", "overlay_mask", "scan_geometry"]

FOV_MODALITY_RULES = {
    "ct": "body", "mri": "body", "xray": "collimation", "ultrasound": "sector",
    "fundus": "aperture", "endoscopy": "aperture", "dermoscopy": "aperture",
    "pathology": "tissue", "oct": "frame", "angiography": "frame",
}
_MIN_FRACTION = 0.05


def _range(image: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    return 255.0 if image.dtype == np.uint8 else float(max(1, int(image.max())))


def _grey(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float64)
    return x @ np.array([0.299, 0.587, 0.114]) if x.ndim == 3 else x


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def _hull(mask: np.ndarray) -> np.ndarray:
    pts = cv2.findNonZero(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.uint8)
    if pts is None:
        return mask
    cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool)


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= r * r


def _finish(fov: np.ndarray) -> np.ndarray:
    if fov.mean() < _MIN_FRACTION:
        return np.ones(fov.shape, bool)
    return fov.astype(bool)


def _median(g: np.ndarray) -> np.ndarray:
    """3x3 median (despeckles without moving edges)."""
    return ndi.median_filter(g, size=3, mode="nearest")


def _body(image: np.ndarray, modality: str, data_range: float) -> np.ndarray:
    g = _median(_grey(image))
    if modality == "mri":
        level = 0.08 * float(np.percentile(g, 99))
    else:
        level = 0.02 * data_range
    fg = g > level
    fg = ndi.binary_opening(fg, structure=_disk(2))
    body = _largest(fg)
    body = ndi.binary_closing(body, structure=_disk(3), iterations=1, border_value=0)
    return _finish(ndi.binary_fill_holes(body))


def _collimation(image: np.ndarray, data_range: float) -> np.ndarray:
    g = _grey(image)
    h, w = g.shape
    m = cv2.blur(g.astype(np.float32), (5, 5)).astype(np.float64)
    sq = cv2.blur((g * g).astype(np.float32), (5, 5)).astype(np.float64)
    flat = np.sqrt(np.maximum(sq - m * m, 0.0)) < 0.005 * data_range
    top, bottom, left, right = 0, h, 0, w
    while top < h // 2 and flat[top, left:right].mean() >= 0.97:
        top += 1
    while bottom > top + h // 4 and flat[bottom - 1, left:right].mean() >= 0.97:
        bottom -= 1
    while left < w // 2 and flat[top:bottom, left].mean() >= 0.97:
        left += 1
    while right > left + w // 4 and flat[top:bottom, right - 1].mean() >= 0.97:
        right -= 1
    fov = np.zeros((h, w), bool)
    # the 5x5 flatness test stops 2 px before the field's edge: move a cut edge 2 px inward
    t, b = (top + 2 if top else 0), (bottom - 2 if bottom < h else h)
    lft, r = (left + 2 if left else 0), (right - 2 if right < w else w)
    fov[t:b, lft:r] = True
    return _finish(fov)


def overlay_mask(image: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """Burned-in overlay pixels of an ultrasound frame: saturated (>= 98 % of the range) or coloured.

    Coloured = channels differing by more than 12 % of the range (colour bars, ECG traces, markers on a
    grey B-mode image). Dilated by one pixel so anti-aliased edges are included.
    """
    rng_ = _range(image, data_range)
    if image.ndim == 3:
        x = image.astype(np.float64)
        colour = (x.max(axis=2) - x.min(axis=2)) > 0.12 * rng_
        sat = x.max(axis=2) >= 0.98 * rng_
        over = colour | sat
    else:
        over = image.astype(np.float64) >= 0.98 * rng_
    return ndi.binary_dilation(over, structure=np.ones((3, 3), bool)) if over.any() else over


def _sector(image: np.ndarray, data_range: float) -> np.ndarray:
    over = overlay_mask(image, data_range)
    g = _grey(image)
    g = np.where(over, 0.0, g)
    h, w = g.shape
    sm = cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0).astype(np.float64)
    sig = sm > 0.06 * data_range
    r = max(2, int(round(0.02 * min(h, w))))
    sig = ndi.binary_opening(sig, structure=_disk(r))  # drops text, ECG traces, thin markers
    lab, n = ndi.label(sig)
    if n == 0:
        return np.ones((h, w), bool)
    sizes = ndi.sum(sig, lab, index=np.arange(1, n + 1))
    keep = np.zeros((h, w), bool)
    for i, (s, sl) in enumerate(zip(sizes, ndi.find_objects(lab)), start=1):
        ch, cw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if ch < 0.1 * h and cw > 0.5 * w:
            continue  # a low, wide strip: an ECG / scale bar panel, not an image sector
        if s >= 0.10 * sizes.max():
            keep |= _hull(lab == i)
    return _finish(keep & ~over)


def _aperture(image: np.ndarray, data_range: float) -> np.ndarray:
    g = _median(_grey(image))
    fg = g > 0.06 * data_range
    if fg.mean() > 0.97:
        return np.ones(fg.shape, bool)
    ap = _hull(ndi.binary_fill_holes(_largest(fg)))
    return _finish(ap)


def _tissue(image: np.ndarray, data_range: float) -> np.ndarray:
    x = np.clip(image.astype(np.float64) / data_range, 1.0 / data_range, 1.0)
    if x.ndim == 2:
        x = x[..., None]
    od = (-np.log(x)).sum(axis=2)
    sat = x.max(axis=2) - x.min(axis=2)
    t = (od > 0.25) | (sat > 0.08)
    t = cv2.GaussianBlur(t.astype(np.float32), (0, 0), 2.0) > 0.5
    t = ndi.binary_closing(t, structure=_disk(3), border_value=0)
    lab, n = ndi.label(t)
    if n:
        sizes = ndi.sum(t, lab, index=np.arange(1, n + 1))
        t = np.isin(lab, 1 + np.flatnonzero(sizes >= 0.002 * t.size))
    t = ndi.binary_fill_holes(t)
    if t.mean() > 0.97:
        return np.ones(t.shape, bool)
    return _finish(t)


def detect_fov(image: np.ndarray, modality: str, data_range: float | None = None) -> np.ndarray:
    """The boolean ``(H, W)`` field of view of ``image`` for ``modality`` (see the module table).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3)``, integer.
    modality : str
        One of :data:`medfm_hf.MODALITIES`.
    data_range : float, optional
        The image's value range (255 for ``uint8``; the stored range for 16-bit data).
    """
    if modality not in FOV_MODALITY_RULES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(FOV_MODALITY_RULES)}")
    image = np.asarray(image)
    dr = _range(image, data_range)
    rule = FOV_MODALITY_RULES[modality]
    if rule == "body":
        return _body(image, modality, dr)
    if rule == "collimation":
        return _collimation(image, dr)
    if rule == "sector":
        return _sector(image, dr)
    if rule == "aperture":
        return _aperture(image, dr)
    if rule == "tissue":
        return _tissue(image, dr)
    return np.ones(image.shape[:2], bool)


@dataclass(frozen=True)
class ScanGeometry:
    """Scan lines of an ultrasound FOV.

    ``kind`` is ``"sector"`` (lines fan out from ``apex`` = (x, y), possibly above the image, between
    ``angles`` radians measured from the downward vertical) or ``"linear"`` (vertical lines, one per
    column). ``line`` and ``depth`` give, per pixel, the scan-line coordinate (radians or columns) and
    the depth along it (pixels from the apex or from the FOV's top edge).
    """

    kind: str
    apex: tuple[float, float]
    angles: tuple[float, float]
    line: np.ndarray
    depth: np.ndarray


def scan_geometry(fov: np.ndarray) -> ScanGeometry:
    """Estimate the scan lines of an ultrasound ``fov`` (the largest component is used).

    A sector (or convex) probe widens with depth: the left and right edges of each row are fitted with
    straight lines, whose intersection is the apex. If the width grows by less than 15 % from the top
    quarter to the bottom quarter, or the fitted edges do not open downwards from an apex above the
    FOV's top (+10 % of the height), the probe is taken as linear.
    """
    fov = np.asarray(fov, bool)
    h, w = fov.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    comp = _largest(fov)
    rows = np.flatnonzero(comp.any(axis=1))
    if rows.size < 4:
        return ScanGeometry("linear", (w / 2.0, 0.0), (0.0, 0.0), xx, yy)
    lefts = np.array([np.flatnonzero(comp[r])[0] for r in rows], np.float64)
    rights = np.array([np.flatnonzero(comp[r])[-1] for r in rows], np.float64)
    widths = rights - lefts
    q = max(1, rows.size // 4)
    top_w, bot_w = np.median(widths[:q]), np.median(widths[-q:])
    top = float(rows[0])
    if bot_w < 1.15 * max(top_w, 1.0):
        return ScanGeometry("linear", (w / 2.0, top), (0.0, 0.0), xx, yy - top)
    # straight edges: 15-70 % of the way down to the sector's widest row (near it, and below it, the arc
    # of the far field curves the edges), without the apex region and rows cut by the frame
    widest = int(np.flatnonzero(widths >= 0.97 * widths.max())[0])
    use = np.zeros(rows.size, bool)
    use[int(0.15 * widest) : int(0.7 * widest) + 1] = True
    use &= (lefts > 0) & (rights < w - 1)
    if use.sum() < 4:
        use = (lefts > 0) & (rights < w - 1)
    if use.sum() < 4:
        return ScanGeometry("linear", (w / 2.0, top), (0.0, 0.0), xx, yy - top)
    pl = np.polyfit(rows[use], lefts[use], 1)
    pr = np.polyfit(rows[use], rights[use], 1)
    if abs(pl[0] - pr[0]) < 1e-6:
        return ScanGeometry("linear", (w / 2.0, top), (0.0, 0.0), xx, yy - top)
    ay = (pr[1] - pl[1]) / (pl[0] - pr[0])
    ax = pl[0] * ay + pl[1]
    a0, a1 = math.atan(pl[0]), math.atan(pr[0])
    if not (a0 < 0.0 < a1) or ay > top + 0.1 * h:  # not a fan opening downwards from above: treat as linear
        return ScanGeometry("linear", (w / 2.0, top), (0.0, 0.0), xx, yy - top)
    theta = np.arctan2(xx - ax, yy - ay)
    depth = np.hypot(xx - ax, yy - ay)
    return ScanGeometry("sector", (float(ax), float(ay)), (min(a0, a1), max(a0, a1)), theta, depth)
