"""Robustness drop: how much a per-sample score falls from the clean image to its perturbed versions.

For each severity level :math:`\\ell`, over the samples evaluated at that level (paired: the clean score
and the perturbed score of the *same* sample),

.. math::

    \\Delta_\\ell = \\bar s^{\\,clean}_\\ell - \\bar s^{\\,pert}_\\ell, \\qquad
    \\rho_\\ell = \\Delta_\\ell / \\bar s^{\\,clean}_\\ell

(absolute and relative drop; the relative drop is a ratio of means, NaN when the clean mean is 0).
``overall`` averages the per-level values over levels (each level weighs the same, as in
``*_STATS_BY_LEVEL``); ``pooled`` uses every pair at once. A pair with a NaN on either side (e.g. IoU with
``empty_score=nan``) is left out of both sides and counted in ``num_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["robustness_drop"]


def _summary(clean: np.ndarray, pert: np.ndarray) -> dict[str, float]:
    if clean.size == 0:
        nan = float("nan")
        return {"clean": nan, "perturbed": nan, "absolute_drop": nan, "relative_drop": nan, "num_pairs": 0}
    c, p = float(clean.mean()), float(pert.mean())
    drop = c - p
    return {
        "clean": c,
        "perturbed": p,
        "absolute_drop": drop,
        "relative_drop": drop / c if c != 0 else float("nan"),
        "num_pairs": int(clean.size),
    }


def robustness_drop(
    perturbed: Sequence[float],
    clean: Sequence[float],
    levels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Absolute and relative drop from clean to perturbed scores, per level and overall.

    Parameters
    ----------
    perturbed : sequence of float
        Score of each perturbed sample (e.g. its IoU or 0/1 correctness).
    clean : sequence of float
        Score of the same sample's clean image, aligned with ``perturbed``.
    levels : sequence of int, optional
        Severity level of each perturbed sample; all ``1`` when omitted.

    Returns
    -------
    dict
        ``absolute_drop``, ``relative_drop`` (mean over levels), ``clean``, ``perturbed`` (means over
        levels), ``pooled`` (summary over all pairs), ``per_level`` (``{level: summary}``), ``levels``,
        ``num_pairs``, ``num_excluded``.

    Examples
    --------
    >>> out = robustness_drop([0.8, 0.6, 0.4, 0.2], [0.8, 0.8, 0.8, 0.8], levels=[1, 1, 3, 3])
    >>> round(out["per_level"][3]["absolute_drop"], 6), round(out["relative_drop"], 6)
    (0.5, 0.375)
    """
    n = len(perturbed)
    if levels is None:
        levels = [1] * n
    if len(clean) != n or len(levels) != n:
        raise ValueError(
            f"got {n} perturbed scores, {len(clean)} clean scores and {len(levels)} levels; "
            "pass one clean score and one level per perturbed sample"
        )
    p = np.asarray(perturbed, dtype=np.float64)
    c = np.asarray(clean, dtype=np.float64)
    lv = np.asarray([int(v) for v in levels], dtype=np.int64)
    keep = ~(np.isnan(p) | np.isnan(c))
    per_level: dict[int, dict[str, float]] = {}
    for level in sorted({int(v) for v in lv.tolist()}):
        sel = keep & (lv == level)
        per_level[level] = _summary(c[sel], p[sel])
    keys = ("clean", "perturbed", "absolute_drop", "relative_drop")
    overall: dict[str, float] = {}
    for key in keys:
        vals = [s[key] for s in per_level.values() if not math.isnan(s[key])]
        overall[key] = float(np.mean(vals)) if vals else float("nan")
    return {
        **overall,
        "pooled": _summary(c[keep], p[keep]),
        "per_level": per_level,
        "levels": sorted(per_level),
        "num_pairs": int(keep.sum()),
        "num_excluded": int(n - keep.sum()),
    }
