"""Per-image IoU and Dice for binary segmentation masks (or probability maps thresholded at 0.5).

Definitions, for a prediction ``P`` and a reference ``G`` (sets of foreground pixels):

.. math::

    \\mathrm{IoU} = \\frac{|P \\cap G|}{|P \\cup G|}, \\qquad
    \\mathrm{Dice} = \\frac{2 |P \\cap G|}{|P| + |G|}

Both are undefined when ``P`` and ``G`` are both empty (0 / 0). A model that correctly predicts
"nothing here" is right, so the default ``empty_score`` is ``1.0``; pass ``empty_score=float("nan")`` to
leave those images out of the mean instead (``nanmean``). ``torchmetrics`` scores the both-empty case as
``0`` (``zero_division=0``) -- the only place where the two disagree (see ``docs/metrics.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["binarize_mask", "dice_per_image", "iou_per_image", "segmentation_scores"]


def binarize_mask(mask: Any, threshold: float = 0.5, *, name: str = "mask") -> np.ndarray:
    """Turn a binary mask or a probability map into a ``bool`` array.

    Parameters
    ----------
    mask : array-like
        ``(H, W)`` boolean, ``{0, 1}`` or ``{0, 255}`` (any integer or float dtype; ``{0, 255}`` means
        foreground ``> 127``), or probabilities in ``[0, 1]``. Anything else (logits, label maps) raises.
    threshold : float
        Foreground is ``value > threshold`` for probabilities and ``{0, 1}`` masks.
    name : str
        Used in error messages only.

    Returns
    -------
    numpy.ndarray
        ``bool`` array of the same shape.
    """
    arr = np.asarray(mask)
    if arr.dtype == object:
        arr = np.asarray(arr.tolist(), dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}; squeeze channel axes first")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} has dtype {arr.dtype}; pass a bool, integer or float array")
    if arr.size == 0:
        return arr.astype(bool)
    lo, hi = arr.min(), arr.max()
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{name} contains NaN; check the model output before scoring")
    if hi > 1 or lo < 0:
        if lo >= 0 and np.isin(arr, (0, 255)).all():  # a {0, 255} mask (also after evaluate's float cast)
            return arr > 127
        raise ValueError(
            f"{name} has values in [{lo}, {hi}]: expected a {{0, 1}} or {{0, 255}} mask or probabilities in "
            "[0, 1]; apply a sigmoid to logits and binarise label maps (label == k) first"
        )
    return arr > threshold
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} has dtype {arr.dtype}; pass a bool, integer or float array")
    if arr.size and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; check the model output before scoring")
    return arr > threshold


def _pair_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    inter = int(np.count_nonzero(pred & ref))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(ref))


def _check_pairs(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions and {len(references)} references; pass one prediction per reference"
        )


def _binarized_pairs(
    predictions: Sequence[Any], references: Sequence[Any], threshold: float
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    _check_pairs(predictions, references)
    for i, (p, r) in enumerate(zip(predictions, references)):
        pb = binarize_mask(p, threshold, name=f"prediction {i}")
        rb = binarize_mask(r, threshold, name=f"reference {i}")
        if pb.shape != rb.shape:
            raise ValueError(
                f"prediction {i} has shape {pb.shape} but its reference has {rb.shape}; "
                "resize the prediction to the reference image first"
            )
        yield pb, rb


def iou_per_image(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    threshold: float = 0.5,
    empty_score: float = 1.0,
) -> list[float]:
    """Intersection over union of each prediction/reference pair.

    Parameters
    ----------
    predictions, references : sequence of array-like
        One ``(H, W)`` mask or probability map per image (see :func:`binarize_mask`).
    threshold : float
        Probability threshold (foreground is ``> threshold``).
    empty_score : float
        Score when both masks are empty (default ``1.0``; ``nan`` excludes the image from means).

    Returns
    -------
    list of float

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((4, 4), bool); p[:2, :2] = True
    >>> g = np.zeros((4, 4), bool); g[:2, :] = True
    >>> iou_per_image([p], [g])
    [0.5]
    """
    out = []
    for pb, rb in _binarized_pairs(predictions, references, threshold):
        inter, n_p, n_r = _pair_counts(pb, rb)
        union = n_p + n_r - inter
        out.append(float(empty_score) if union == 0 else inter / union)
    return out


def dice_per_image(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    threshold: float = 0.5,
    empty_score: float = 1.0,
) -> list[float]:
    """Dice coefficient (F1 of the foreground) of each prediction/reference pair.

    Parameters are those of :func:`iou_per_image`.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((4, 4), bool); p[:2, :2] = True
    >>> g = np.zeros((4, 4), bool); g[:2, :] = True
    >>> dice_per_image([p], [g])
    [0.6666666666666666]
    """
    out = []
    for pb, rb in _binarized_pairs(predictions, references, threshold):
        inter, n_p, n_r = _pair_counts(pb, rb)
        denom = n_p + n_r
        out.append(float(empty_score) if denom == 0 else 2.0 * inter / denom)
    return out


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def segmentation_scores(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    metric: str = "iou",
    threshold: float = 0.5,
    empty_score: float = 1.0,
) -> dict[str, Any]:
    """Mean and per-image IoU or Dice, as the ``evaluate`` modules return them.

    Parameters
    ----------
    predictions, references : sequence of array-like
        Masks or probability maps, one pair per image.
    metric : {"iou", "dice"}
        Which score.
    threshold, empty_score : float
        See :func:`iou_per_image`.

    Returns
    -------
    dict
        ``{metric: mean over images (NaN-skipping), f"per_image_{metric}": list, "num_images": int,
        "num_both_empty": int}``.
    """
    if metric not in ("iou", "dice"):
        raise ValueError(f"unknown metric {metric!r}; use 'iou' or 'dice'")
    pairs = list(_binarized_pairs(predictions, references, threshold))
    fn = iou_per_image if metric == "iou" else dice_per_image
    scores = fn([p for p, _ in pairs], [r for _, r in pairs], threshold=threshold, empty_score=empty_score)
    both_empty = sum(1 for p, r in pairs if not p.any() and not r.any())
    return {
        metric: _mean(scores),
        f"per_image_{metric}": scores,
        "num_images": len(scores),
        "num_both_empty": both_empty,
    }
