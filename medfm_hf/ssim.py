"""Fast structural similarity (SSIM), equal to scikit-image's defaults.

:func:`ssim` returns the same number as::

    skimage.metrics.structural_similarity(a, b, data_range=R, channel_axis=-1 if rgb else None)

with scikit-image's defaults -- a 7x7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, the sample
covariance (``N / (N - 1)``), the mean taken over the image minus a 3-pixel border -- to 1e-6 (in
practice ~1e-12). RGB (any channels-last image) is the mean of the per-channel SSIMs.

``data_range`` defaults to the dtype's range: 255 for ``uint8``, 65535 for ``uint16``. It is never
estimated from the image (a per-image min-max would hide brightness, contrast, bias and stain changes).
For a 16-bit source whose real range is narrower (12-bit CT stored in ``uint16``: 4095), pass that
range as ``data_range``. Float images need an explicit ``data_range``.

Why it is faster: scikit-image filters five full-size maps with a reflect-padded uniform filter and
then discards a 3-pixel border. Only the interior is ever used, and on the interior the padded filter
equals a plain "valid" 7x7 box mean, which we take with cumulative sums (exact in float64 for 8- and
16-bit images); channels and candidates are processed as one stacked array. :class:`SSIMReference`
keeps the reference's statistics so scoring many candidates against one clean image (what the
calibrator does) computes them once.

The field of view. :class:`SSIMReference` and :func:`ssim` take an optional boolean ``fov`` mask: the
SSIM map is then averaged over the windows lying entirely inside the FOV (the FOV eroded by the
window's half-width, 3 px), so a perturbation is measured where the image holds signal. The whole-frame
value (scikit-image's number) comes from the same map at no extra cost (:meth:`SSIMReference.score_both`).
If fewer than 49 windows fit inside the FOV, the whole frame is used (``SSIMReference.fov_used`` is
then False).

Examples
--------
>>> import numpy as np
>>> from medfm_hf.ssim import ssim, SSIMReference
>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 256, (64, 64), dtype=np.uint8)
>>> round(ssim(a, a), 6)
1.0
>>> ref = SSIMReference(a)
>>> b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
>>> bool(abs(ref.score(b) - ssim(a, b)) < 1e-12)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["WIN_SIZE", "SSIMError", "SSIMReference", "default_data_range", "ssim", "ssim_batch"]

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
_NP = WIN_SIZE * WIN_SIZE
_COV_NORM = _NP / (_NP - 1.0)


class SSIMError(ValueError):
    """Bad input to :func:`ssim`; the message says what was wrong and what to do."""


def default_data_range(dtype: np.dtype) -> float:
    """The SSIM ``data_range`` implied by a dtype: 255 for ``uint8``, 65535 for ``uint16``.

    Raises
    ------
    SSIMError
        For any other dtype (pass ``data_range`` explicitly).
    """
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise SSIMError(
        f"cannot infer data_range for dtype {dtype}; pass data_range explicitly "
        "(e.g. 1.0 for float images in [0, 1], 4095 for 12-bit data)"
    )


def _check_one(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (2, 3):
        raise SSIMError(f"{what} must be (H, W) or (H, W, C), got shape {x.shape}")
    if min(x.shape[:2]) < WIN_SIZE:
        raise SSIMError(
            f"{what} is {x.shape[0]}x{x.shape[1]} pixels; SSIM's 7x7 window needs at least 7x7"
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise SSIMError(f"{what} has unsupported dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise SSIMError(f"{what} contains NaN or infinite values")
    return x


def _work_dtype(*dtypes: np.dtype) -> type:
    """Exact arithmetic type for window sums: int32 for 8-bit, int64 for 16-bit, else float64.

    Window sums of 8-bit products (<= 49 * 255**2) fit int32; of 16-bit products, int64. Integer sums
    are exact and, for 8-bit data, move half the memory of float64.
    """
    if all(np.dtype(d) == np.uint8 for d in dtypes):
        return np.int32
    if all(np.dtype(d) in (np.dtype(np.uint8), np.dtype(np.uint16)) for d in dtypes):
        return np.int64
    return np.float64


def _channels_first(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, C) -> (C, H, W), contiguous, as ``dtype``."""
    x = x.astype(dtype, copy=False)
    if x.ndim == 2:
        return x[None]
    return np.ascontiguousarray(np.moveaxis(x, -1, 0))


def _box_sum(x: np.ndarray) -> np.ndarray:
    """Sum over every 7x7 window lying fully inside the last two axes ("valid" mode).

    Seven shifted in-place additions per axis (in ``x``'s dtype; exact for integer input).
    """
    w = WIN_SIZE
    h = x.shape[-2] - w + 1
    rows = x[..., 0:h, :].copy()
    for i in range(1, w):
        rows += x[..., i : i + h, :]
    wd = x.shape[-1] - w + 1
    out = rows[..., 0:wd].copy()
    for i in range(1, w):
        out += rows[..., i : i + wd]
    return out


class SSIMReference:
    """A clean image whose SSIM statistics are computed once, to score many candidates against it.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` image (``uint8``/``uint16``, or float with ``data_range``).
    data_range : float, optional
        Value range; default from the dtype (255 / 65535). Pass it for 16-bit sources with a
        narrower range, and always for float images.
    """

    def __init__(
        self, reference: np.ndarray, data_range: float | None = None, fov: np.ndarray | None = None
    ) -> None:
        ref = _check_one(reference, "reference image")
        if data_range is None:
            data_range = default_data_range(ref.dtype)
        data_range = float(data_range)
        if not np.isfinite(data_range) or data_range <= 0:
            raise SSIMError(f"data_range must be a positive number, got {data_range}")
        self.shape = ref.shape
        self.dtype = ref.dtype
        self.data_range = data_range
        self.c1 = (K1 * data_range) ** 2
        self.c2 = (K2 * data_range) ** 2
        self._work = _work_dtype(ref.dtype)
        self._set_reference(_channels_first(ref, self._work))
        self._inside: np.ndarray | None = None
        self.fov_used = False
        if fov is not None:
            fov = np.asarray(fov, bool)
            if fov.shape != ref.shape[:2]:
                raise SSIMError(f"fov shape {fov.shape} differs from the image's {ref.shape[:2]}")
            inside = _box_sum(fov[None].astype(np.int32))[0] == _NP  # window fully inside the FOV
            if int(inside.sum()) >= _NP and not inside.all():
                self._inside = inside
                self.fov_used = True

    def _set_reference(self, x: np.ndarray) -> None:
        """Reference-only terms of the SSIM formula (window sums ``S``), computed once.

        With ``N = 49`` window pixels and window sums ``Sx, Sy, Sxx, Syy, Sxy``, scikit-image's
        ``(2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` with sample covariances
        equals ``(2 Sx Sy + C1 N^2)(2 (N Sxy - Sx Sy) + C2 N (N-1)) /
        ((Sx^2 + Sy^2 + C1 N^2)(N Sxx - Sx^2 + N Syy - Sy^2 + C2 N (N-1)))``, whose integer parts are
        exact for 8/16-bit images (int32 / int64).
        """
        self._x = x
        sx = _box_sum(x)
        self._sx = sx
        self._sx2 = sx * sx
        self._vx_n = _NP * _box_sum(x * x) - self._sx2
        self._c1n = self.c1 * _NP * _NP
        self._c2n = self.c2 * _NP * (_NP - 1)

    def _check_candidate(self, cand: np.ndarray) -> np.ndarray:
        cand = _check_one(cand, "candidate image")
        if cand.shape != self.shape:
            raise SSIMError(f"candidate shape {cand.shape} differs from the reference's {self.shape}")
        return cand

    def _prepare(self, cand: np.ndarray) -> np.ndarray:
        work = self._work if _work_dtype(self.dtype, cand.dtype) == self._work else np.float64
        if work is not self._work:  # mixed integer/float inputs: fall back to float64
            self._work = np.float64
            self._set_reference(self._x.astype(np.float64))
        return _channels_first(cand, work)

    def _map_stack(self, y: np.ndarray) -> np.ndarray:
        """``y``: (K, C, H, W) in the work dtype -> (K, C, H-6, W-6) SSIM maps of the valid windows."""
        sy = _box_sum(y)
        syy = _box_sum(y * y)
        sxy = _box_sum(self._x * y)
        sxsy = self._sx * sy
        sxy *= _NP  # -> N Sxy - Sx Sy (twice the sample covariance, up to N (N-1))
        sxy -= sxsy
        sxy *= 2
        sy *= sy  # -> Sy^2
        syy *= _NP  # -> N Syy - Sy^2 + N Sxx - Sx^2
        syy -= sy
        syy += self._vx_n
        sy += self._sx2  # -> Sx^2 + Sy^2
        sxsy *= 2
        num = sxsy + self._c1n
        num *= sxy + self._c2n
        den = sy + self._c1n
        den *= syy + self._c2n
        num /= den
        return num

    def _reduce(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, C, h, w) maps -> (FOV mean, whole-frame mean), each (K,)."""
        frame = maps.mean(axis=(-2, -1)).mean(axis=-1)
        if self._inside is None:
            return frame, frame
        return maps[..., self._inside].mean(axis=-1).mean(axis=-1), frame

    def _score_stack(self, y: np.ndarray) -> np.ndarray:
        """``y``: (K, C, H, W) -> (K,) mean SSIM over the FOV (the whole frame without one)."""
        return self._reduce(self._map_stack(y))[0]

    def score(self, candidate: np.ndarray) -> float:
        """SSIM between the reference and one candidate of the same shape (over the FOV if one was given)."""
        cand = self._check_candidate(candidate)
        return float(self._score_stack(self._prepare(cand)[None])[0])

    def score_both(self, candidate: np.ndarray) -> tuple[float, float]:
        """``(FOV SSIM, whole-frame SSIM)`` from one evaluation (equal without an FOV)."""
        cand = self._check_candidate(candidate)
        fov_v, frame_v = self._reduce(self._map_stack(self._prepare(cand)[None]))
        return float(fov_v[0]), float(frame_v[0])

    def local_map(self, candidate: np.ndarray) -> np.ndarray:
        """The SSIM map ``(H, W)`` (channel mean; the 3-px border, outside every full window, is NaN)."""
        cand = self._check_candidate(candidate)
        m = self._map_stack(self._prepare(cand)[None])[0].mean(axis=0)
        out = np.full(self.shape[:2], np.nan)
        r = WIN_SIZE // 2
        out[r : r + m.shape[0], r : r + m.shape[1]] = m
        return out

    def score_many(self, candidates: Sequence[np.ndarray] | np.ndarray, chunk: int = 1) -> np.ndarray:
        """SSIM of each candidate against the reference, as a float64 array of length ``K``.

        Parameters
        ----------
        candidates : sequence of arrays or numpy.ndarray
            ``K`` images of the reference's shape, or one array of shape ``(K, *reference.shape)``.
        chunk : int
            Candidates processed together; 1 (the default) is fastest on CPU as the working set
            stays in cache, the reference's statistics are reused either way.
        """
        if isinstance(candidates, np.ndarray) and candidates.shape == self.shape:
            raise SSIMError("score_many expects a sequence of candidates; use score() for one image")
        items = list(candidates)
        out = np.empty(len(items), dtype=np.float64)
        for start in range(0, len(items), max(1, int(chunk))):
            part = [self._check_candidate(c) for c in items[start : start + chunk]]
            stack = np.stack([self._prepare(c) for c in part])
            out[start : start + len(part)] = self._score_stack(stack)
        return out


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None, fov: np.ndarray | None = None) -> float:
    """Mean SSIM of two images, equal to ``skimage.metrics.structural_similarity`` (defaults).

    Parameters
    ----------
    a, b : numpy.ndarray
        Same shape: ``(H, W)`` grey or ``(H, W, C)`` channels-last (RGB = mean of per-channel SSIM).
    data_range : float, optional
        Defaults to 255 for ``uint8`` and 65535 for ``uint16`` (taken from ``a``). For 16-bit sources
        whose real range is narrower, pass it; float images require it.
    fov : numpy.ndarray, optional
        Boolean ``(H, W)`` field of view: average the SSIM map over the windows inside it.

    Returns
    -------
    float
        SSIM in [-1, 1]; defined for constant images too (the constants ``C1``, ``C2`` keep the
        ratio finite).
    """
    return SSIMReference(a, data_range, fov).score(b)


def ssim_batch(
    reference: np.ndarray,
    candidates: Sequence[np.ndarray] | np.ndarray,
    data_range: float | None = None,
) -> np.ndarray:
    """SSIM of many candidates against one reference (the reference's statistics computed once).

    Equivalent to ``np.array([ssim(reference, c, data_range) for c in candidates])``.
    """
    return SSIMReference(reference, data_range).score_many(candidates)
