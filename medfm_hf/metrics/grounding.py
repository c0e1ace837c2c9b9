"""Grounding accuracy: parse each model answer into a pixel box and compare it with the reference box.

Acc@IoU\\ :math:`t` is the fraction of samples whose parsed box has IoU :math:`\\ge t` with the reference;
mean IoU averages the per-sample IoU. An answer with no readable box is a miss (IoU 0): it stays in every
denominator and is also counted in ``num_unparsable``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from medfm_hf.metrics.boxes import box_iou, parse_box

__all__ = ["DEFAULT_IOU_THRESHOLDS", "grounding_scores"]

DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.75)


def _threshold_key(t: float) -> str:
    return f"acc@{t:g}"


def grounding_scores(
    predictions: Sequence[Any],
    references: Sequence[Sequence[float]],
    image_sizes: Sequence[Sequence[int]],
    *,
    box_format: str = "auto",
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """Acc@IoU and mean IoU of model boxes against reference pixel boxes.

    Parameters
    ----------
    predictions : sequence of str
        Raw model outputs (or four numbers per sample).
    references : sequence of [x0, y0, x1, y1]
        Reference boxes in pixels of the image the model saw.
    image_sizes : sequence of (width, height)
        Size of each image in pixels (to convert normalised boxes).
    box_format : str
        ``"auto"`` or one of :data:`medfm_hf.metrics.boxes.BOX_FORMATS`, for every sample.
    iou_thresholds : sequence of float
        Thresholds for the ``acc@t`` keys (IoU ``>= t`` is a hit).

    Returns
    -------
    dict
        ``acc@0.3``, ``acc@0.5``, ``acc@0.75`` (one per threshold), ``mean_iou``, ``num_samples``,
        ``num_unparsable``, ``unparsable_rate``, ``per_sample_iou``, ``parsed_boxes`` (``None`` when
        unparsable), ``box_formats`` (the convention used per sample, ``None`` when unparsable) and
        ``box_format_counts``.

    Examples
    --------
    >>> out = grounding_scores(['{"box_2d": [0, 0, 500, 500]}', "no box"], [[0, 0, 50, 50], [0, 0, 10, 10]],
    ...                        [(100, 100), (100, 100)])
    >>> out["acc@0.5"], out["num_unparsable"]
    (0.5, 1)
    """
    n = len(predictions)
    if len(references) != n or len(image_sizes) != n:
        raise ValueError(
            f"got {n} predictions, {len(references)} references and {len(image_sizes)} image_sizes; "
            "pass one of each per sample"
        )
    for t in iou_thresholds:
        if not 0.0 < float(t) <= 1.0:
            raise ValueError(f"IoU threshold {t} is outside (0, 1]")
    ious: list[float] = []
    boxes: list[list[float] | None] = []
    formats: list[str | None] = []
    for i, (pred, ref, size) in enumerate(zip(predictions, references, image_sizes)):
        try:
            ref = [float(v) for v in ref]
        except (TypeError, ValueError):
            raise ValueError(f"reference {i} must be a pixel [x0, y0, x1, y1] box of numbers; got {ref!r}") from None
        if len(ref) != 4 or not all(math.isfinite(v) for v in ref):
            raise ValueError(f"reference {i} must be four finite numbers [x0, y0, x1, y1] (no NaN or inf); got {ref}; "
                             "fix the dataset row")
        if ref[2] < ref[0] or ref[3] < ref[1]:
            raise ValueError(f"reference {i} is inverted: a pixel [x0, y0, x1, y1] box needs x0 <= x1 and y0 <= y1; "
                             f"got {ref}")
        parsed = parse_box(pred, tuple(size), box_format)
        if parsed is None:
            ious.append(0.0)
            boxes.append(None)
            formats.append(None)
            continue
        ious.append(box_iou(parsed.box, ref))
        boxes.append(parsed.box)
        formats.append(parsed.box_format)
    arr = np.asarray(ious, dtype=np.float64)
    out: dict[str, Any] = {}
    for t in iou_thresholds:
        out[_threshold_key(float(t))] = float(np.mean(arr >= float(t))) if n else float("nan")
    n_bad = sum(1 for f in formats if f is None)
    out.update(
        {
            "mean_iou": float(arr.mean()) if n else float("nan"),
            "num_samples": n,
            "num_unparsable": n_bad,
            "unparsable_rate": n_bad / n if n else float("nan"),
            "per_sample_iou": ious,
            "parsed_boxes": boxes,
            "box_formats": formats,
            "box_format_counts": dict(Counter(f for f in formats if f is not None)),
        }
    )
    return out
