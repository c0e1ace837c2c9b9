"""Per-image calibration: find, for each severity level, the strength whose SSIM falls in its band.

Severity is not a hand-set parameter: for every (image, perturbation) the calibrator searches the
scalar ``strength`` so that the SSIM between the clean image and the perturbed one (as stored, i.e.
after quantisation to the image's dtype) lands in the level's band:

=====  ===========
level  SSIM band
=====  ===========
1      0.90 - 0.98
2      0.80 - 0.90
3      0.70 - 0.80
4      0.60 - 0.70
5      0.50 - 0.60
=====  ===========

How the search works (one search gives all levels):

* One seed is derived from ``(seed, image_id, perturbation)`` with a stable hash (:func:`derive_seed`,
  SHA-256, not Python's salted ``hash()``). Every trial calls the perturbation with a **fresh**
  ``np.random.default_rng(derived)``, so the random draws (noise fields, angles, positions) are the
  same for every strength: SSIM is a deterministic, (near) monotone function of strength, and the five
  levels show the same artifact growing.
* A coarse sweep evaluates the top of the strength range and then strengths a factor 4 apart going
  down, until one is milder than the mildest requested band's centre. Any sweep point that lands in a
  band resolves that level for free.
* Each unresolved level is then searched inside its bracket (the strongest point above the band, the
  mildest point below it) by the secant rule in ``(log strength, log(1 - SSIM))`` coordinates, where
  most perturbations are close to a straight line, aiming at the band centre and stopping as soon as a
  trial is in band; an Illinois-style switch to bisection (in log strength) guards against slow
  convergence. Evaluations are reused across levels.
* Every SSIM evaluation is counted and charged to exactly one level (the level it aimed at; a sweep
  point to the level whose band centre is nearest), so ``sum(r.evaluations)`` is the search's total.
* A band that cannot be reached (the range's end is too mild, or SSIM jumps over the band because the
  perturbation is discrete, e.g. JPEG quality) gives ``in_band=False`` with the closest strength
  found, logged as a warning -- never a silent copy of another level.

What is measured. The band SSIM (``ssim``) is the SSIM map averaged over the record's field of view
(``fov``, :mod:`medfm_hf.perturbations.fov`) eroded by the window's half-width -- the artifact is
measured where the signal is; the whole-frame value is kept as ``ssim_frame`` (both from the same
evaluation). Without an ``fov`` both are the whole-frame SSIM.

Physical ceilings. The search never goes beyond the perturbation's ``max_strength`` (its declared
physical ceiling: the strongest physically plausible strength, with its reason in the registry). A level
that is not reached gets ``in_band=False`` and a ``reason``: ``"ceiling"`` (even the ceiling is milder than
the band, and the effect was still growing there: a stronger, implausible strength might have reached
it), ``"saturated"`` (even the ceiling is milder, and the effect has stopped growing: a strength a
quarter of the ceiling or more, already evaluated, is within 0.02 SSIM of it, e.g. the smoothing floor of
the blurs; no strength would reach the band), ``"discrete"`` (SSIM jumps over the band between two strengths that no
longer differ, e.g. JPEG quality steps), ``"search"`` (the evaluation cap was hit; should not happen).

Constant images: SSIM is still defined for them (``C1``/``C2`` keep it finite), but they have no
structure whose loss the bands measure, so :func:`calibrate` refuses them with a
:class:`~medfm_hf.perturbations.PerturbationError` (skip such images at the source).

Example
-------
>>> import numpy as np
>>> from skimage import data
>>> from medfm_hf.calibration import calibrate
>>> img = data.camera()[::4, ::4]
>>> results = calibrate(img, "gaussian_blur", image_id="demo/camera", seed=0)
>>> [r.level for r in results]
[1, 2, 3, 4, 5]
>>> all(r.in_band for r in results)
True
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from medfm_hf.perturbations import Perturbation, PerturbationError, get_perturbation
from medfm_hf.perturbations.registry import OCCLUSION_OPACITY, check_image, stored_range
from medfm_hf.records import mask_to_bbox
from medfm_hf.ssim import SSIMReference

__all__ = [
    "BANDS",
    "CalibrationResult",
    "band_of",
    "calibrate",
    "derive_seed",
    "in_band",
    "visible_fraction",
]

log = logging.getLogger(__name__)

#: SSIM band ``(low, high)`` per severity level (both ends included).
BANDS: dict[int, tuple[float, float]] = {
    1: (0.90, 0.98),
    2: (0.80, 0.90),
    3: (0.70, 0.80),
    4: (0.60, 0.70),
    5: (0.50, 0.60),
}

_SWEEP_FACTOR = 4.0
_SWEEP_MAX_POINTS = 8
#: SSIM gained over the last factor 4 of strength below which a miss at the ceiling is ``"saturated"``
_PLATEAU_SSIM = 0.02
_MAX_EVALS_PER_LEVEL = 10
_MIN_LOG_WIDTH = 1e-4  # bracket narrower than this in log-strength: the band is jumped over


@dataclass
class CalibrationResult:
    """One calibrated severity level of one (image, perturbation).

    Attributes
    ----------
    level : int
        Severity level (1-5).
    strength : float
        The strength chosen (in band, or the closest found when ``in_band`` is False).
    ssim : float
        SSIM of ``image`` (the quantised output) to the clean image.
    in_band : bool
        Whether ``ssim`` lies in :data:`BANDS` ``[level]``.
    evaluations : int
        SSIM evaluations charged to this level; summed over the levels of one call this is the
        search's total.
    image : numpy.ndarray
        The perturbed image at ``strength`` (input dtype and shape).
    mask : numpy.ndarray or None
        The mask moved with the image (geometric perturbations) or a copy of the input mask.
    bbox : list of int or None
        ``[x0, y0, x1, y1]`` recomputed from ``mask`` (``None`` without a mask or when it is empty).
    seed : int
        The derived seed (:func:`derive_seed`) whose fresh generator produced ``image``.
    perturbation : str
        The perturbation's name.
    image_id : str
        The image's id.
    ssim_frame : float
        Whole-frame SSIM of the same output (``ssim`` is over the FOV).
    reason : str
        Why the band was not reached (``"ceiling"``, ``"saturated"``, ``"discrete"``, ``"search"``);
        ``""`` when in band.
    target_visible_fraction : float or None
        Fraction of the (moved) mask not covered by an occluder of opacity above
        :data:`~medfm_hf.perturbations.registry.OCCLUSION_OPACITY` (1.0 for perturbations that hide
        nothing); ``None`` without a mask or when the mask is empty.
    """

    level: int
    strength: float
    ssim: float
    in_band: bool
    evaluations: int
    image: np.ndarray = field(repr=False)
    mask: np.ndarray | None = field(repr=False)
    bbox: list[int] | None
    seed: int
    perturbation: str = ""
    image_id: str = ""
    ssim_frame: float = float("nan")
    reason: str = ""
    target_visible_fraction: float | None = None


def visible_fraction(mask: np.ndarray | None, opacity: np.ndarray | None) -> float | None:
    """Fraction of ``mask`` whose occluder opacity is at most ``OCCLUSION_OPACITY`` (None: no mask)."""
    if mask is None or not np.any(mask):
        return None
    if opacity is None:
        return 1.0
    return float(np.mean(np.asarray(opacity)[np.asarray(mask, bool)] <= OCCLUSION_OPACITY))


def derive_seed(seed: int, image_id: str, perturbation: str) -> int:
    """A stable 63-bit seed for ``(seed, image_id, perturbation)`` (SHA-256; same on every machine).

    >>> derive_seed(0, "demo/ct_000", "gaussian_noise") == derive_seed(0, "demo/ct_000", "gaussian_noise")
    True
    >>> derive_seed(0, "a", "jpeg") != derive_seed(1, "a", "jpeg")
    True
    """
    key = f"{int(seed)}\x1f{image_id}\x1f{perturbation}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def in_band(ssim_value: float, level: int) -> bool:
    """Whether ``ssim_value`` lies in the band of ``level`` (ends included)."""
    lo, hi = BANDS[level]
    return lo <= ssim_value <= hi


def band_of(ssim_value: float) -> int | None:
    """The mildest level whose band contains ``ssim_value``, or ``None``."""
    for level in sorted(BANDS):
        if in_band(ssim_value, level):
            return level
    return None


def _distance_to_band(ssim_value: float, level: int) -> float:
    lo, hi = BANDS[level]
    return max(lo - ssim_value, ssim_value - hi, 0.0)


def _check_levels(levels: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise PerturbationError(f"levels must be a sequence of integers 1-5 such as (1, 3, 5), got {levels!r}")
    odd = [v for v in levels if isinstance(v, bool) or not float(v).is_integer()]
    if odd:
        raise PerturbationError(f"levels must be whole numbers 1-5, got {odd}")
    out = tuple(int(v) for v in levels)
    if not out:
        raise PerturbationError("levels is empty; pass e.g. levels=(1, 2, 3, 4, 5)")
    bad = [v for v in out if v not in BANDS]
    if bad:
        raise PerturbationError(f"unknown severity level(s) {bad}; levels are 1-5")
    if len(set(out)) != len(out):
        raise PerturbationError(f"levels {out} contain duplicates")
    return tuple(sorted(out))


class _Search:
    """State of one calibration search (points evaluated, outputs kept, charges per level)."""

    def __init__(
        self,
        image: np.ndarray,
        pert: Perturbation,
        derived: int,
        mask: np.ndarray | None,
        ref: SSIMReference,
        levels: tuple[int, ...],
        data_range: float | None = None,
        fov: np.ndarray | None = None,
        window: tuple | None = None,
    ) -> None:
        self.data_range = data_range
        self.fov = fov
        self.window = window
        self.frame: dict[float, float] = {0.0: 1.0}
        self.image = image
        self.pert = pert
        self.derived = derived
        self.mask = mask
        self.ref = ref
        self.levels = levels
        self.points: list[tuple[float, float]] = [(0.0, 1.0)]  # strength 0 is the identity
        self.outputs: dict[float, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
        self.charged = dict.fromkeys(levels, 0)
        self.smax = float(pert.max_strength)
        self.discrete: set[int] = set()

    def generate(self, strength: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        rng = np.random.default_rng(self.derived)
        out = self.pert.apply_full(self.image, strength, rng, self.mask, data_range=self.data_range,
                                   fov=self.fov, window=self.window)
        return out.image, out.mask, out.opacity

    def evaluate(self, strength: float, charge: int | None) -> float:
        strength = float(strength)
        for s, v in self.points:
            if s == strength:
                return v
        out, moved, opacity = self.generate(strength)
        value, frame = self.ref.score_both(out)
        self.frame[strength] = frame
        self.points.append((strength, value))
        self.points.sort()
        if any(in_band(value, lv) for lv in self.levels):
            self.outputs[strength] = (out, moved, opacity)
        if charge is None:
            charge = min(self.levels, key=lambda lv: abs(value - sum(BANDS[lv]) / 2))
        self.charged[charge] += 1
        return value

    def evaluated(self, strength: float) -> bool:
        return any(s == strength for s, _ in self.points[1:])

    def sweep(self) -> None:
        """Top of the range, then a factor 4 apart going down until milder than the mildest centre."""
        stop = sum(BANDS[self.levels[0]]) / 2
        s = self.smax
        for _ in range(_SWEEP_MAX_POINTS):
            value = self.evaluate(s, None)
            if value >= stop:
                break
            s /= _SWEEP_FACTOR

    def plateau(self, top_value: float) -> bool:
        """Whether the effect has stopped growing at the ceiling: a strength 1/4 of it or more (already
        evaluated) gives an SSIM within :data:`_PLATEAU_SSIM` of the ceiling's."""
        near = [v for s, v in self.points if self.smax / _SWEEP_FACTOR <= s < self.smax]
        return bool(near) and min(near) - top_value < _PLATEAU_SSIM

    def in_band_point(self, level: int) -> tuple[float, float] | None:
        centre = sum(BANDS[level]) / 2
        hits = [(s, v) for s, v in self.points if s > 0 and in_band(v, level)]
        return min(hits, key=lambda p: abs(p[1] - centre)) if hits else None

    def bracket(self, level: int) -> tuple[tuple[float, float], tuple[float, float] | None]:
        """(strongest point above the band, mildest point below it or None)."""
        lo, hi = BANDS[level]
        below = [(s, v) for s, v in self.points if v < lo]
        b = min(below) if below else None
        above = [(s, v) for s, v in self.points if v > hi and (b is None or s < b[0])]
        a = max(above)
        return a, b

    def propose(
        self, a: tuple[float, float], b: tuple[float, float], target: float, bisect: bool
    ) -> float:
        """Next strength inside ``(a, b)`` aiming at SSIM ``target`` (secant in log-log)."""
        (sa, va), (sb, vb) = a, b
        dt = math.log(1.0 - target)
        if sa > 0:
            ua, ub = math.log(sa), math.log(sb)
            if bisect or va >= 1.0 or vb >= 1.0:
                t = 0.5
            else:
                da, db = math.log(1.0 - va), math.log(1.0 - vb)
                t = 0.5 if db <= da else (dt - da) / (db - da)
            t = min(max(t, 0.1), 0.9)
            return math.exp(ua + t * (ub - ua))
        # Lower end is the identity (strength 0): extrapolate from b with the local log-log slope.
        above_b = [(s, v) for s, v in self.points if s > sb and v < vb]
        slope = 1.0
        if above_b and vb < 1.0:
            sc, vc = above_b[0]
            slope = (math.log(1.0 - vc) - math.log(1.0 - vb)) / (math.log(sc) - math.log(sb))
        slope = min(max(slope, 0.5), 3.0)
        if bisect or vb >= 1.0:
            return sb / _SWEEP_FACTOR
        s = sb * math.exp((dt - math.log(1.0 - vb)) / slope)
        return min(max(s, sb * 1e-3), sb * 0.9)

    def solve(self, level: int) -> None:
        """Search ``level``'s bracket until a trial is in band, the band proves unreachable, or the cap."""
        lo, hi = BANDS[level]
        target = (lo + hi) / 2
        last_side = 0
        same_side = 0
        for _ in range(_MAX_EVALS_PER_LEVEL):
            if self.in_band_point(level) is not None:
                return
            a, b = self.bracket(level)
            if b is None:
                if self.evaluated(self.smax):
                    return  # even the top of the range is milder than the band
                self.evaluate(self.smax, level)
                continue
            if a[0] > 0 and math.log(b[0]) - math.log(a[0]) < _MIN_LOG_WIDTH:
                self.discrete.add(level)
                return  # SSIM jumps over the band (discrete perturbation)
            s = self.propose(a, b, target, bisect=same_side >= 2)
            value = self.evaluate(s, level)
            side = 1 if value > hi else -1
            same_side = same_side + 1 if side == last_side else 1
            last_side = side

    def result(self, level: int, image_id: str) -> CalibrationResult:
        hit = self.in_band_point(level)
        reason = ""
        if hit is None:
            candidates = [(s, v) for s, v in self.points if s > 0]
            hit = min(candidates, key=lambda p: (_distance_to_band(p[1], level), p[0]))
            top = [v for s, v in self.points if s == self.smax]
            if level in self.discrete:
                reason = "discrete"
            elif top and top[0] > BANDS[level][1]:
                reason = "saturated" if self.plateau(top[0]) else "ceiling"
            else:
                reason = "search"
            log.warning(
                "%s on %s: level %d band %s not reached (%s); closest strength %.4g gives SSIM %.4f",
                self.pert.name, image_id, level, BANDS[level], reason, hit[0], hit[1],
            )
        strength, value = hit
        if strength in self.outputs:
            out, moved, opacity = self.outputs[strength]
            out, moved = out.copy(), None if moved is None else moved.copy()
        else:  # out of band: regenerate (same seed -> identical output); not an SSIM evaluation
            out, moved, opacity = self.generate(strength)
        return CalibrationResult(
            level=level,
            strength=strength,
            ssim=value,
            in_band=in_band(value, level),
            evaluations=self.charged[level],
            image=out,
            mask=moved,
            bbox=None if moved is None else mask_to_bbox(moved),
            seed=self.derived,
            perturbation=self.pert.name,
            image_id=image_id,
            ssim_frame=self.frame[strength],
            reason=reason,
            target_visible_fraction=visible_fraction(moved, opacity),
        )


def calibrate(
    image: np.ndarray,
    name: str,
    *,
    image_id: str,
    seed: int = 0,
    levels: tuple[int, ...] = (1, 2, 3, 4, 5),
    mask: np.ndarray | None = None,
    data_range: float | None = None,
    fov: np.ndarray | None = None,
    window: tuple | None = None,
) -> list[CalibrationResult]:
    """Calibrate perturbation ``name`` on one image: one :class:`CalibrationResult` per level.

    Parameters
    ----------
    image : numpy.ndarray
        Clean ``(H, W)`` or ``(H, W, 3)`` image, ``uint8`` or ``uint16``.
    name : str
        A registered perturbation (``medfm-robust perturbations`` lists them).
    image_id : str
        Stable id of the image (``source/stem``); part of the derived seed.
    seed : int
        Global seed; with ``image_id`` and ``name`` it gives the perturbation's seed.
    levels : tuple of int
        Severity levels to find (subset of 1-5); all come from one search.
    mask : numpy.ndarray, optional
        Boolean ``(H, W)`` mask; geometric perturbations move it, and ``bbox`` is recomputed.
    data_range : float, optional
        The stored range: SSIM's data range and the range the perturbation works in. Default
        :func:`~medfm_hf.perturbations.registry.stored_range` (255; for ``uint16`` the smallest of
        10/12/14/16-bit full scale holding the image's maximum).
    fov : numpy.ndarray, optional
        Boolean ``(H, W)`` field of view: ``ssim`` is measured inside it (whole frame without it).
    window : tuple, optional
        ``(centre, width)`` display window in the source's units (CT: HU), for perturbations that work
        in physical units.

    Returns
    -------
    list of CalibrationResult
        Sorted by level.

    Raises
    ------
    PerturbationError
        Unknown perturbation, bad image (dtype, shape, size, NaN), a constant image, a colour-only
        perturbation on a grey image, bad levels or a mask of the wrong shape.
    """
    pert = get_perturbation(name)
    image = check_image(image, name)
    if image.min() == image.max():
        raise PerturbationError(
            f"{name}: image {image_id!r} is constant (every pixel = {image.flat[0]}); there is no "
            "structure whose loss the SSIM bands measure, so severity levels would be meaningless. "
            "Skip this image (check the source or its intensity window)."
        )
    if pert.colour_only and image.ndim != 3:
        raise PerturbationError(f"{name} applies to colour (H, W, 3) images only; got a grey image")
    lv = _check_levels(levels)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape[:2]:
            raise PerturbationError(
                f"{name}: mask shape {mask.shape} differs from image shape {image.shape[:2]}"
            )
        mask = mask.astype(bool)
    if fov is not None:
        fov = np.asarray(fov, bool)
        if fov.shape != image.shape[:2]:
            raise PerturbationError(f"{name}: fov shape {fov.shape} differs from image shape {image.shape[:2]}")
    dr = stored_range(image, data_range)
    derived = derive_seed(seed, image_id, name)
    search = _Search(image, pert, derived, mask, SSIMReference(image, dr, fov), lv, dr, fov, window)
    search.sweep()
    for level in lv:
        search.solve(level)
    return [search.result(level, image_id) for level in lv]
