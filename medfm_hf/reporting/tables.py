"""Robustness tables with paired bootstrap confidence intervals.

Every quantity is computed from per-image means, so that one resample of images (see
:mod:`medfm_hf.reporting.stats`) gives every model's clean score, perturbed scores and drops together:

* **clean**: the mean score on the clean images;
* **drop** of a perturbation: mean over its levels of (clean − perturbed), each level on the images it
  holds (a perturbation may apply to some modalities only), so clean and perturbed are always the same
  images; **relative drop**: drop divided by the clean score of those images;
* **robustness AUC**: the area under the relative-score curve ``score_l / clean_l`` over levels, with level
  0 = 1 (the clean image), divided by the highest level: 1 means no loss at any level, 0.5 that half the
  score is gone on average over the severity range;
* **mCE** (Hendrycks & Dietterich 2019, with error = 1 − score): for each perturbation the summed error over
  levels divided by the reference model's, averaged over perturbations; **relative mCE** uses the drop
  instead of the error. Below 1 means more robust than the reference.

Each table is a :class:`pandas.DataFrame` whose estimate columns hold :class:`~medfm_hf.reporting.stats.Estimate`
values; :mod:`medfm_hf.reporting.formats` turns them into CSV (value, lo, hi), Markdown or LaTeX.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from medfm_hf.reporting.stats import DEFAULT_CONFIDENCE, DEFAULT_N_BOOT, Estimate, PairedBootstrap

logger = logging.getLogger(__name__)

Stat = Callable[[np.ndarray], np.ndarray]
NAN = Estimate(float("nan"), float("nan"), float("nan"))


class TaskAnalysis:
    """Every statistic of one task (one metric) over its images, from one paired bootstrap.

    Parameters
    ----------
    samples : DataFrame
        Loaded samples (:func:`medfm_hf.reporting.load.load_results`) of a single task.
    n_boot, confidence : bootstrap settings.
    rng : numpy Generator for the resamples.
    """

    def __init__(self, samples: pd.DataFrame, n_boot: int = DEFAULT_N_BOOT, rng: np.random.Generator | None = None,
                 confidence: float = DEFAULT_CONFIDENCE) -> None:
        if samples["task"].nunique() != 1:
            raise ValueError("TaskAnalysis takes the samples of one task")
        self.samples = samples
        self.task = str(samples["task"].iloc[0])
        self.metric = str(samples["metric"].iloc[0])
        cells = samples.groupby(["image_id", "entry", "kind", "name", "level"], sort=False)[["score", "clean_score"]]
        per_image = cells.mean().unstack(["entry", "kind", "name", "level"])
        self.images = list(per_image.index)
        self.columns = {c: i for i, c in enumerate(per_image.columns)}
        self.boot = PairedBootstrap(per_image.to_numpy(dtype=np.float64), n_boot=n_boot, rng=rng,
                                    confidence=confidence)
        self.cells = samples[["entry", "kind", "name", "family", "level", "epsilon"]].drop_duplicates(
            ["entry", "kind", "name", "level"])
        self._entries = [str(e) for e in pd.unique(samples["entry"])]
        self._levels: dict[tuple, list[int]] = {}
        self._names: dict[tuple, list[str]] = {}
        self._cell: dict[tuple, dict] = {}
        for r in self.cells.to_dict("records"):
            self._levels.setdefault((r["entry"], r["kind"], r["name"]), []).append(int(r["level"]))
            self._levels.setdefault((r["entry"], r["kind"], None), []).append(int(r["level"]))
            self._names.setdefault((r["entry"], r["kind"]), []).append(r["name"])
            self._cell[(r["entry"], r["kind"], r["name"], int(r["level"]))] = r
        self._levels = {k: sorted(set(v)) for k, v in self._levels.items()}
        self._names = {k: sorted(set(v)) for k, v in self._names.items()}
        self._n = samples.groupby(["entry", "kind", "name"], sort=False)["image_id"].nunique().to_dict()

    # --- columns -------------------------------------------------------------------------------------------
    def entries(self) -> list[str]:
        return self._entries

    def names(self, entry: str, kind: str) -> list[str]:
        return self._names.get((entry, kind), [])

    def levels(self, entry: str, kind: str, name: str | None = None) -> list[int]:
        return self._levels.get((entry, kind, name), [])

    def _col(self, field: str, entry: str, kind: str, name: str, level: int) -> int:
        return self.columns[(field, entry, kind, name, level)]

    # --- statistics (functions of column means) ------------------------------------------------------------
    def clean_stat(self, entry: str) -> Stat:
        i = self._col("score", entry, "clean", "clean", 0)
        return lambda m: m[:, i]

    def _level_pairs(self, entry: str, kind: str, name: str) -> tuple[list[int], list[int], list[int]]:
        lv = self.levels(entry, kind, name)
        return (lv, [self._col("clean_score", entry, kind, name, x) for x in lv],
                [self._col("score", entry, kind, name, x) for x in lv])

    def drop_stat(self, entry: str, kind: str, name: str, level: int | None = None,
                  relative: bool = False) -> Stat:
        """Mean over levels (or at ``level``) of clean − perturbed, optionally divided by the clean mean."""
        lv, c, s = self._level_pairs(entry, kind, name)
        if level is not None:
            k = lv.index(level)
            c, s = [c[k]], [s[k]]

        def stat(m: np.ndarray) -> np.ndarray:
            clean = m[:, c].mean(axis=1)
            drop = clean - m[:, s].mean(axis=1)
            return drop / clean if relative else drop

        return stat

    def score_stat(self, entry: str, kind: str, name: str, level: int) -> Stat:
        i = self._col("score", entry, kind, name, level)
        return lambda m: m[:, i]

    def auc_stat(self, entry: str, kind: str, name: str) -> Stat:
        lv, c, s = self._level_pairs(entry, kind, name)
        x = np.array([0.0, *lv])

        def stat(m: np.ndarray) -> np.ndarray:
            rel = m[:, s] / m[:, c]
            y = np.c_[np.ones(len(m)), rel]
            return ((y[:, 1:] + y[:, :-1]) / 2 * np.diff(x)).sum(axis=1) / x[-1]

        return stat

    def mean_of(self, stats: list[Stat]) -> Stat:
        """The mean of several statistics (e.g. the drop averaged over perturbations), NaN ones left out."""
        if not stats:
            return lambda m: np.full(len(m), np.nan)

        def stat(m: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples stay NaN
                return np.nanmean(np.stack([f(m) for f in stats]), axis=0)

        return stat

    def level_drop_stat(self, entry: str, level: int, relative: bool = False) -> Stat:
        """Drop at ``level`` averaged over the perturbations that have it."""
        names = [n for n in self.names(entry, "perturbation") if level in self.levels(entry, "perturbation", n)]
        return self.mean_of([self.drop_stat(entry, "perturbation", n, level, relative) for n in names])

    def ce_stat(self, entry: str, reference: str, name: str, relative: bool = False) -> Stat:
        """Summed error (1 − score; or drop, ``relative``) over levels, divided by the reference's."""
        lv = sorted(set(self.levels(entry, "perturbation", name)) & set(self.levels(reference, "perturbation", name)))

        def err(e: str) -> Stat:
            c = [self._col("clean_score", e, "perturbation", name, x) for x in lv]
            s = [self._col("score", e, "perturbation", name, x) for x in lv]
            if relative:
                return lambda m: (m[:, c] - m[:, s]).sum(axis=1)
            return lambda m: (1.0 - m[:, s]).sum(axis=1)

        a, b = err(entry), err(reference)

        def stat(m: np.ndarray) -> np.ndarray:
            den = b(m)
            return np.where(den > 0, a(m) / np.where(den > 0, den, 1.0), np.nan)

        return stat

    def mce_stat(self, entry: str, reference: str, relative: bool = False) -> Stat | None:
        common = sorted(set(self.names(entry, "perturbation")) & set(self.names(reference, "perturbation")))
        if not common:
            return None
        return self.mean_of([self.ce_stat(entry, reference, n, relative) for n in common])

    def estimate(self, stat: Stat, n: int | None = None) -> Estimate:
        e = self.boot.estimate(stat)
        return Estimate(e.value, e.lo, e.hi, n if n is not None else len(self.images))

    def n_images(self, entry: str, kind: str, name: str) -> int:
        return int(self._n.get((entry, kind, name), 0))

    # --- tables --------------------------------------------------------------------------------------------
    def overview(self, reference: str | None = None) -> pd.DataFrame:
        """One row per model: clean score, mean drop, relative drop and AUC over perturbations, mCE, attacks."""
        rows = []
        for e in self.entries():
            names = self.names(e, "perturbation")
            row = {"task": self.task, "metric": self.metric, "model": e,
                   "images": int(self.samples.loc[self.samples["entry"] == e, "image_id"].nunique()),
                   "perturbations": len(names), "clean": self.estimate(self.clean_stat(e))}
            if names:
                row["drop"] = self.estimate(self.mean_of([self.drop_stat(e, "perturbation", n) for n in names]))
                row["rel_drop"] = self.estimate(self.mean_of(
                    [self.drop_stat(e, "perturbation", n, relative=True) for n in names]))
                row["auc"] = self.estimate(self.mean_of([self.auc_stat(e, "perturbation", n) for n in names]))
            if reference is not None and reference in self.entries():
                for rel, col in ((False, "mCE"), (True, "rel_mCE")):
                    st = self.mce_stat(e, reference, rel)
                    row[col] = self.estimate(st) if st is not None else NAN
            attacks = self.names(e, "attack")
            if attacks:
                row["attack_drop"] = self.estimate(self.mean_of([self.drop_stat(e, "attack", n) for n in attacks]))
            rows.append(row)
        return _fill(pd.DataFrame(rows))

    def by_perturbation(self, kind: str = "perturbation") -> pd.DataFrame:
        """One row per (model, perturbation): family, clean of the same images, drop, relative drop, AUC."""
        rows = []
        for e in self.entries():
            for n in self.names(e, kind):
                lv, c, _ = self._level_pairs(e, kind, n)
                fam = self._cell[(e, kind, n, lv[0])]["family"]
                rows.append({"task": self.task, "metric": self.metric, "model": e, "perturbation": n,
                             "family": fam, "levels": len(lv), "images": self.n_images(e, kind, n),
                             "clean": self.estimate(lambda m, c=c: m[:, c].mean(axis=1)),
                             "drop": self.estimate(self.drop_stat(e, kind, n)),
                             "rel_drop": self.estimate(self.drop_stat(e, kind, n, relative=True)),
                             "auc": self.estimate(self.auc_stat(e, kind, n))})
        return pd.DataFrame(rows)

    def by_level(self) -> pd.DataFrame:
        """One row per (model, level): drop and relative drop averaged over the perturbations."""
        rows = []
        for e in self.entries():
            for lv in self.levels(e, "perturbation"):
                rows.append({"task": self.task, "metric": self.metric, "model": e, "level": lv,
                             "drop": self.estimate(self.level_drop_stat(e, lv)),
                             "rel_drop": self.estimate(self.level_drop_stat(e, lv, relative=True))})
        return pd.DataFrame(rows)

    def by_family_level(self) -> pd.DataFrame:
        """One row per (model, perturbation family, level): drop and relative drop averaged over the family."""
        rows = []
        fam = self.cells[self.cells["kind"] == "perturbation"]
        for e in self.entries():
            fe = fam[fam["entry"] == e]
            for f, g in fe.groupby("family", sort=True):
                for lv in sorted(set(g["level"])):
                    names = sorted(set(g.loc[g["level"] == lv, "name"]))
                    rows.append({"task": self.task, "metric": self.metric, "model": e, "family": f, "level": lv,
                                 "perturbations": len(names),
                                 "drop": self.estimate(self.mean_of(
                                     [self.drop_stat(e, "perturbation", n, lv) for n in names])),
                                 "rel_drop": self.estimate(self.mean_of(
                                     [self.drop_stat(e, "perturbation", n, lv, relative=True) for n in names]))})
        return pd.DataFrame(rows)

    def by_cell(self, kind: str = "perturbation") -> pd.DataFrame:
        """One row per (model, perturbation or attack, level): score, drop and relative drop."""
        rows = []
        for e in self.entries():
            for n in self.names(e, kind):
                for lv in self.levels(e, kind, n):
                    cell = self._cell[(e, kind, n, lv)]
                    rows.append({"task": self.task, "metric": self.metric, "model": e, "kind": kind,
                                 "name": n, "family": cell["family"], "level": lv, "epsilon": cell["epsilon"],
                                 "score": self.estimate(self.score_stat(e, kind, n, lv)),
                                 "drop": self.estimate(self.drop_stat(e, kind, n, lv)),
                                 "rel_drop": self.estimate(self.drop_stat(e, kind, n, lv, relative=True))})
        return pd.DataFrame(rows)

    def paired_tests(self, reference: str | None = None, max_entries: int = 10) -> pd.DataFrame:
        """Model A vs B on the same images: difference of mean drop (overall and per perturbation), paired.

        With a ``reference`` every model is compared with it, otherwise every pair (first ``max_entries``).
        A positive difference means A loses more than B.
        """
        entries = self.entries()
        if reference is not None and reference in entries:
            pairs = [(e, reference) for e in entries if e != reference]
        else:
            pairs = list(itertools.combinations(entries[:max_entries], 2))
        rows = []
        images = self.samples[self.samples["kind"] == "clean"].groupby("entry")["image_id"].agg(frozenset)
        for a, b in pairs:
            if images.get(a) != images.get(b):
                logger.warning("%s and %s were evaluated on different images; their comparison is paired only "
                               "where both have the image (evaluate both on the same benchmark and --limit)", a, b)
            common = sorted(set(self.names(a, "perturbation")) & set(self.names(b, "perturbation")))
            scopes = [("all", common)] + [(n, [n]) for n in common]
            for scope, names in scopes:
                if not names:
                    continue
                for rel in (False, True):
                    sa = self.mean_of([self.drop_stat(a, "perturbation", n, relative=rel) for n in names])
                    sb = self.mean_of([self.drop_stat(b, "perturbation", n, relative=rel) for n in names])
                    diff, p = self.boot.compare(sa, sb)
                    rows.append({"task": self.task, "metric": self.metric, "model_a": a, "model_b": b,
                                 "perturbation": scope, "quantity": "rel_drop" if rel else "drop",
                                 "a": self.estimate(sa), "b": self.estimate(sb), "difference": diff, "p_value": p})
        return pd.DataFrame(rows)


def _fill(df: pd.DataFrame) -> pd.DataFrame:
    """Estimates missing from some rows (a model without attacks) become NaN estimates."""
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, Estimate)).any():
            df[c] = df[c].map(lambda v: v if isinstance(v, Estimate) else NAN)
    return df


def by_modality(samples: pd.DataFrame, n_boot: int, seed: int,
                confidence: float = DEFAULT_CONFIDENCE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (model, modality): clean, drop and relative drop over perturbations; and per (model, modality,
    level). Each modality is bootstrapped over its own images (one resample for all its models)."""
    rows, level_rows = [], []
    for i, (mod, g) in enumerate(samples.groupby("modality", sort=True)):
        an = TaskAnalysis(g, n_boot, np.random.default_rng([seed, 1, i]), confidence)
        for _, r in an.overview().iterrows():
            rows.append({"task": an.task, "metric": an.metric, "model": r["model"], "modality": mod,
                         "images": r["images"], "clean": r["clean"], "drop": r.get("drop", NAN),
                         "rel_drop": r.get("rel_drop", NAN)})
        lv = an.by_level()
        if not lv.empty:
            level_rows.append(lv.assign(modality=mod))
    levels = pd.concat(level_rows, ignore_index=True) if level_rows else pd.DataFrame()
    return _fill(pd.DataFrame(rows)), levels


def strategy_ranking(by_entry: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuning strategies ranked within each base model by relative drop (smallest first)."""
    strat = samples[["entry", "model", "strategy"]].drop_duplicates("entry").set_index("entry")
    if (strat["strategy"] == "").all():
        return pd.DataFrame()
    t = by_entry.join(strat, on="model", rsuffix="_")
    t = t.rename(columns={"model": "entry", "model_": "base_model"})
    tuned = set(t.loc[t["strategy"] != "", "base_model"])
    t = t[t["base_model"].isin(tuned)].copy()  # models never fine-tuned have nothing to rank
    t["strategy"] = t["strategy"].replace("", "none")
    t["_key"] = t["rel_drop"].map(lambda e: e.value)
    t = t.sort_values(["task", "base_model", "_key"]).reset_index(drop=True)
    t["rank"] = t.groupby(["task", "base_model"]).cumcount() + 1
    cols = ["task", "metric", "base_model", "strategy", "rank", "clean", "drop", "rel_drop", "auc"]
    return t[[c for c in cols if c in t.columns]]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width confidence bins: sum over bins of (share of samples) x |accuracy − confidence|."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    ok = np.isfinite(confidence) & np.isfinite(correct)
    confidence, correct = confidence[ok], correct[ok]
    if confidence.size == 0:
        return float("nan")
    b = np.minimum((np.clip(confidence, 0, 1) * bins).astype(int), bins - 1)
    ece = 0.0
    for k in range(bins):
        sel = b == k
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(ece)


def calibration_by_level(an: TaskAnalysis) -> pd.DataFrame:
    """VLM tasks with a ``confidence`` column: accuracy (with its interval) and ECE per model and level
    (level 0 = clean), averaged over perturbations."""
    s = an.samples
    if "confidence" not in s.columns or s["confidence"].isna().all():
        return pd.DataFrame()
    rows = []
    for e in an.entries():
        g = s[(s["entry"] == e) & (s["kind"] != "attack")]
        for lv, gl in g.groupby("level"):
            stat = an.clean_stat(e) if lv == 0 else an.mean_of(
                [an.score_stat(e, "perturbation", n, lv) for n in an.names(e, "perturbation")
                 if lv in an.levels(e, "perturbation", n)])
            rows.append({"task": an.task, "metric": an.metric, "model": e, "level": int(lv),
                         "accuracy": an.estimate(stat),
                         "ece": expected_calibration_error(gl["confidence"], gl["score"]),
                         "mean_confidence": float(gl["confidence"].mean())})
    return pd.DataFrame(rows)
