"""Paired bootstrap over images: one resample serves every clean, perturbed and model column at once.

A results table is pivoted to a matrix with one row per image and one column per quantity (a model's clean
score, its drop at ``gaussian_noise`` level 3, ...). :class:`PairedBootstrap` draws ``n_boot`` resamples of
the **rows** (images, with replacement) and computes every column's mean under each resample. A statistic is
then any function of column means (a drop, a relative drop, an area under the severity curve, a ratio to a
reference model): it is evaluated on the point means and on each resample, and the percentile interval of
the resampled values is its confidence interval.

Because a resample picks whole rows, an image drawn twice contributes its clean *and* its perturbed score
twice: clean and perturbed are never resampled independently, and neither are two models evaluated on the
same images. That is what makes the intervals of a drop (and of a difference between models) narrow when
the per-image differences are consistent, however much the images themselves vary.

Missing cells (``NaN``: an image a perturbation does not apply to) are left out of that column's mean.

>>> import numpy as np
>>> clean = np.array([0.9, 0.5, 0.7, 0.3])
>>> boot = PairedBootstrap(np.c_[clean, clean - 0.1], n_boot=200, rng=np.random.default_rng(0))
>>> est = boot.estimate(lambda m: m[:, 0] - m[:, 1])
>>> round(est.value, 6), round(est.lo, 6), round(est.hi, 6)
(0.1, 0.1, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval (``lo``, ``hi``) and the images behind it."""

    value: float
    lo: float
    hi: float
    n: int = 0

    def format(self, digits: int = 3, percent: bool = False) -> str:
        """``0.161 [0.120, 0.203]`` (or ``16.1 % [12.0, 20.3]`` with ``percent``)."""
        if not math.isfinite(self.value):
            return "–"
        f = 100.0 if percent else 1.0
        unit = " %" if percent else ""
        d = max(digits - 2, 1) if percent else digits
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{self.value * f:.{d}f}{unit}"
        return f"{self.value * f:.{d}f}{unit} [{self.lo * f:.{d}f}, {self.hi * f:.{d}f}]"


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` rows is drawn in each of ``n_boot`` resamples, shape ``(n_boot, n)``.

    The draws are ``rng.integers(0, n, size=(n_boot, n))`` (resample ``b`` takes rows ``idx[b]``); the
    counts are the same resample in a form that turns column means into one matrix product.
    """
    if n < 1:
        raise ValueError("the bootstrap needs at least one image")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Column means of ``values`` (rows x columns, NaN = missing) under each row-weight vector."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(finite, values, 0.0)) / (weights @ finite.astype(np.float64))


class PairedBootstrap:
    """Column means of an (images x quantities) matrix under the same image resamples for every column.

    Parameters
    ----------
    values : array (n_images, n_columns)
        Per-image values; ``NaN`` marks a missing cell.
    n_boot : int
        Number of resamples.
    rng : numpy.random.Generator
        Source of the resamples (pass a seeded one for reproducible intervals).
    confidence : float
        Coverage of the percentile intervals (0.95 = 2.5th to 97.5th percentile).
    """

    def __init__(self, values: np.ndarray, n_boot: int = DEFAULT_N_BOOT, rng: np.random.Generator | None = None,
                 confidence: float = DEFAULT_CONFIDENCE) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"values must be a 2-D (images x columns) array, got shape {values.shape}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        if rng is None:
            raise ValueError("pass a seeded numpy Generator (rng=np.random.default_rng(seed))")
        self.values = values
        self.confidence = confidence
        self.n_boot = n_boot
        self.counts = resample_counts(values.shape[0], n_boot, rng)
        with np.errstate(invalid="ignore"):
            point = _weighted_means(values, np.ones((1, values.shape[0])))
        #: row 0: the point means; rows 1..n_boot: the means under each resample
        self.means = np.vstack([point, _weighted_means(values, self.counts)])
        self.n_per_column = np.isfinite(values).sum(axis=0)

    def evaluate(self, stat: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``stat`` applied to the point means (entry 0) and to every resample (entries 1..n_boot).

        ``stat`` receives the ``(n_boot + 1, n_columns)`` array of column means and returns one value per row.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.asarray(stat(self.means), dtype=np.float64)
        if out.shape != (self.means.shape[0],):
            raise ValueError(f"a statistic must return one value per resample, got shape {out.shape}")
        return out

    def interval(self, samples: np.ndarray) -> tuple[float, float]:
        """Percentile interval of bootstrap ``samples`` (NaN resamples, e.g. an empty column, left out)."""
        s = samples[np.isfinite(samples)]
        if s.size == 0:
            return float("nan"), float("nan")
        a = (1 - self.confidence) / 2
        lo, hi = np.quantile(s, [a, 1 - a])
        return float(lo), float(hi)

    def estimate(self, stat: Callable[[np.ndarray], np.ndarray], columns: Sequence[int] | None = None) -> Estimate:
        """Point value and percentile interval of ``stat``; ``columns`` (if given) count the images behind it."""
        out = self.evaluate(stat)
        lo, hi = self.interval(out[1:])
        n = int(self.n_per_column[list(columns)].max()) if columns is not None and len(columns) else 0
        return Estimate(float(out[0]), lo, hi, n)

    def compare(self, stat_a: Callable[[np.ndarray], np.ndarray],
                stat_b: Callable[[np.ndarray], np.ndarray]) -> tuple[Estimate, float]:
        """Paired test of ``stat_a - stat_b``: the difference with its interval, and a two-sided p-value.

        Both statistics are evaluated on the same resamples. The p-value is that of the bootstrap test of
        "no difference": the share of resampled differences, centred on the observed one, at least as far from
        zero as the observed difference (with the usual +1 in numerator and denominator).
        """
        diff = self.evaluate(stat_a) - self.evaluate(stat_b)
        lo, hi = self.interval(diff[1:])
        d0 = diff[0]
        boot = diff[1:][np.isfinite(diff[1:])]
        if not math.isfinite(d0) or boot.size == 0:
            return Estimate(float(d0), lo, hi), float("nan")
        p = (1 + np.sum(np.abs(boot - d0) >= abs(d0))) / (boot.size + 1)
        return Estimate(float(d0), lo, hi), float(min(1.0, p))


def paired_drop(clean: np.ndarray, perturbed: np.ndarray, n_boot: int = DEFAULT_N_BOOT,
                rng: np.random.Generator | None = None, confidence: float = DEFAULT_CONFIDENCE,
                relative: bool = False) -> Estimate:
    """Mean drop ``clean - perturbed`` over images (or relative drop, divided by the clean mean) with its
    paired bootstrap interval: each resample draws images and takes both scores of every drawn image."""
    clean = np.asarray(clean, dtype=np.float64)
    perturbed = np.asarray(perturbed, dtype=np.float64)
    if clean.shape != perturbed.shape or clean.ndim != 1:
        raise ValueError(f"clean and perturbed must be 1-D arrays of the same images, got {clean.shape} and "
                         f"{perturbed.shape}")
    boot = PairedBootstrap(np.c_[clean, perturbed], n_boot=n_boot, rng=rng, confidence=confidence)
    if relative:
        return boot.estimate(lambda m: (m[:, 0] - m[:, 1]) / m[:, 0], columns=[0, 1])
    return boot.estimate(lambda m: m[:, 0] - m[:, 1], columns=[0, 1])
