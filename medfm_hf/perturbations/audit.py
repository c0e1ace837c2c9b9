"""Side-effect measures of a perturbed image: is a level bought by something other than the artifact?

For a clean image ``x``, its perturbed version ``y`` (same dtype and shape) and the field of view:

* ``new_saturated`` -- fraction of FOV pixels at the top of the range in ``y`` (any channel) and not in
  ``x``;
* ``new_zero`` -- fraction of FOV pixels at zero in ``y`` (all channels) and not in ``x``;
* ``noise_ratio`` -- high-pass energy of ``y`` over that of ``x`` inside the FOV (high pass = image
  minus its Gaussian blur, sigma 1 px; the clean image's acquisition noise and fine texture); a
  perturbation that *removes* noise to reach its level has a ratio well below 1;
* ``affine_share`` -- how much of the SSIM loss a global intensity map explains: ``a x + b`` is fitted
  to ``y`` by least squares over the FOV, clipped to the range, and
  ``affine_share = (1 - SSIM(fit, y)) / (1 - SSIM(x, y))``; near 0 means the perturbation is a global
  brightness/contrast change, near 1 that it is not one at all.

:data:`LIMITS` are the thresholds of the registry-wide property test: at most 5 % newly saturated and
5 % newly zero, at least 70 % of the noise energy kept, at least 25 % of the SSIM loss not explained by an
affine map -- unless the perturbation declares the side effect as its artifact
(:data:`~medfm_hf.perturbations.registry.SIDE_EFFECTS`).
"""

from __future__ import annotations

import cv2
import numpy as np

from medfm_hf.ssim import SSIMReference

__all__ = ["LIMITS", "side_effects", "violations"]

LIMITS = {"saturated": 0.05, "zeroed": 0.05, "smoothing": 0.70, "affine": 0.25}


def _highpass(x: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> ``(H, W, C)`` image minus its Gaussian blur (sigma 1 px), channel by channel."""
    x = x.astype(np.float32)
    return np.stack([x[..., c] - cv2.GaussianBlur(x[..., c], (0, 0), 1.0) for c in range(x.shape[2])], axis=2)


def side_effects(clean: np.ndarray, out: np.ndarray, fov: np.ndarray | None, data_range: float) -> dict:
    """The four measures of the module docstring for one perturbed image."""
    fov = np.ones(clean.shape[:2], bool) if fov is None else np.asarray(fov, bool)
    n = max(1, int(fov.sum()))
    top = data_range
    c = clean.astype(np.float64)
    o = out.astype(np.float64)
    if c.ndim == 2:
        c, o = c[..., None], o[..., None]
    sat_o, sat_c = (o >= top).any(axis=2), (c >= top).any(axis=2)
    zero_o, zero_c = (o <= 0).all(axis=2), (c <= 0).all(axis=2)
    new_sat = float((sat_o & ~sat_c & fov).sum() / n)
    new_zero = float((zero_o & ~zero_c & fov).sum() / n)
    inner = cv2.erode(fov.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 16:
        inner = fov
    hc = _highpass(c)[inner]
    ho = _highpass(o)[inner]
    e_c = float((hc**2).mean())
    noise_ratio = float((ho**2).mean() / e_c) if e_c > 0 else float("nan")
    # affine fit a x + b per channel over the FOV
    fit = np.empty_like(o)
    for ch in range(c.shape[2]):
        xc, yc = c[..., ch][fov], o[..., ch][fov]
        a, b = np.polyfit(xc, yc, 1) if xc.std() > 0 else (0.0, float(yc.mean()))
        fit[..., ch] = np.clip(a * c[..., ch] + b, 0, top)
    fit_img = np.rint(fit).astype(clean.dtype).reshape(clean.shape)
    ref = SSIMReference(out, data_range, fov)
    s_fit = ref.score(fit_img)
    s_clean = SSIMReference(clean, data_range, fov).score(out)
    loss = 1.0 - s_clean
    affine_share = float((1.0 - s_fit) / loss) if loss > 1e-6 else float("nan")
    return {"new_saturated": new_sat, "new_zero": new_zero, "noise_ratio": noise_ratio,
            "affine_share": affine_share}


def violations(measures: dict, declared: frozenset | set = frozenset()) -> list[str]:
    """Names of the :data:`LIMITS` a measurement breaks, minus the declared side effects."""
    bad = []
    if measures["new_saturated"] > LIMITS["saturated"]:
        bad.append("saturated")
    if measures["new_zero"] > LIMITS["zeroed"]:
        bad.append("zeroed")
    if np.isfinite(measures["noise_ratio"]) and measures["noise_ratio"] < LIMITS["smoothing"]:
        bad.append("smoothing")
    if np.isfinite(measures["affine_share"]) and measures["affine_share"] < LIMITS["affine"]:
        bad.append("affine")
    return [b for b in bad if b not in declared]
