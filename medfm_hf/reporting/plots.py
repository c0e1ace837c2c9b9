"""Figures (PNG and SVG) from the report's tables: one style, one colour per model across every figure.

Every function takes a table built by :mod:`medfm_hf.reporting.tables` (estimate columns), writes
``<name>.png`` and ``<name>.svg`` under ``folder`` and returns the PNG path (or ``None`` when the table has
nothing to draw).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pandas as pd

from medfm_hf.io import atomic_path
from medfm_hf.reporting.stats import Estimate

logger = logging.getLogger(__name__)

STYLE = {"figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
         "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "svg.hashsalt": "medfm_hf", "svg.fonttype": "none"}
TOP_N = 15


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_colours(models: list[str]) -> dict[str, tuple]:
    """The same colour for a model in every figure of a report."""
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _save(fig, folder: str, name: str) -> str:
    plt = _plt()
    os.makedirs(folder, exist_ok=True)
    png = os.path.join(folder, f"{name}.png")
    for path in (png, os.path.join(folder, f"{name}.svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=os.path.splitext(path)[1][1:], bbox_inches="tight",
                        metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)
    return png


def _vals(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.array([e.value if isinstance(e, Estimate) else np.nan for e in col], dtype=float)
    lo = np.array([e.lo if isinstance(e, Estimate) else np.nan for e in col], dtype=float)
    hi = np.array([e.hi if isinstance(e, Estimate) else np.nan for e in col], dtype=float)
    return v, lo, hi


def _band(ax, x, estimates: pd.Series, colour, label: str, marker: str = "o") -> None:
    """A line of estimate values with its interval shaded."""
    v, lo, hi = _vals(estimates)
    ax.plot(x, v, f"-{marker}", ms=3, color=colour, label=label)
    ax.fill_between(x, lo, hi, color=colour, alpha=0.18, lw=0)


def _grid(n: int, width: float = 3.3, height: float = 2.7):
    plt = _plt()
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                                 sharey=True)
    return fig, axes.ravel()


def _panel_curves(table: pd.DataFrame, panel: str, x: str, value: str, folder: str, name: str, colours: dict,
                  xlabel: str, ylabel: str, x_scale: float = 1.0, marker: str = "o") -> str | None:
    """One panel per ``panel`` value, ``value`` against ``x`` with one line per model, the interval shaded."""
    if table.empty:
        return None
    plt = _plt()
    panels = list(dict.fromkeys(table[panel]))
    with plt.rc_context(STYLE):
        fig, axes = _grid(len(panels))
        for ax, g in zip(axes, panels):
            t = table[table[panel] == g]
            for model, tm in t.groupby("model", sort=False):
                tm = tm.sort_values(x)
                _band(ax, tm[x].to_numpy(dtype=float) * x_scale, tm[value], colours[model], model, marker)
            ax.axhline(0, color="0.5", lw=0.8)
            ax.set_title(str(g))
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        axes[0].legend(loc="best")
        fig.tight_layout()
        return _save(fig, folder, name)


def severity_curves(table: pd.DataFrame, group: str, folder: str, name: str, colours: dict,
                    value: str = "rel_drop", ylabel: str = "relative drop") -> str | None:
    """One panel per ``group`` value (a perturbation family, a modality): ``value`` against severity level,
    one line per model, the 95 % interval shaded."""
    return _panel_curves(table, group, "level", value, folder, name, colours, "severity level", ylabel)


def heatmap(by_pert: pd.DataFrame, folder: str, name: str, value: str = "rel_drop",
            label: str = "relative drop") -> str | None:
    """Perturbations (rows, most damaging first) x models (columns), coloured by ``value``."""
    if by_pert.empty:
        return None
    plt = _plt()
    t = by_pert.assign(_v=_vals(by_pert[value])[0]).pivot_table(index="perturbation", columns="model", values="_v",
                                                                  sort=False)
    t = t.loc[t.mean(axis=1).sort_values(ascending=False).index]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * t.shape[1], 1.0 + 0.26 * t.shape[0]))
        lim = np.nanmax(np.abs(t.to_numpy())) if np.isfinite(t.to_numpy()).any() else 1.0
        im = ax.imshow(t.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(t.shape[1]), t.columns, rotation=30, ha="right")
        ax.set_yticks(range(t.shape[0]), t.index)
        ax.grid(False)
        for (i, j), v in np.ndenumerate(t.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}" if value == "rel_drop" else f"{v:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if abs(v) > 0.6 * lim else "black")
        fig.colorbar(im, ax=ax, label=label, shrink=0.8)
        fig.tight_layout()
        return _save(fig, folder, name)


def most_damaging(by_pert: pd.DataFrame, folder: str, name: str, colours: dict, n: int = TOP_N,
                  value: str = "rel_drop") -> str | None:
    """The ``n`` perturbations with the largest mean ``value`` over models, one bar per model with its CI."""
    if by_pert.empty:
        return None
    plt = _plt()
    v, lo, hi = _vals(by_pert[value])
    t = by_pert.assign(_v=v, _lo=lo, _hi=hi)
    order = t.groupby("perturbation")["_v"].mean().sort_values(ascending=False).index[:n][::-1]
    models = list(dict.fromkeys(t["model"]))
    h = 0.8 / len(models)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.32 * len(order) * max(1, len(models) / 2)))
        for k, m in enumerate(models):
            tm = t[t["model"] == m].set_index("perturbation").reindex(order)
            y = np.arange(len(order)) - (k - (len(models) - 1) / 2) * h
            err = np.clip(np.nan_to_num(np.vstack([tm["_v"] - tm["_lo"], tm["_hi"] - tm["_v"]])), 0, None)
            ax.barh(y, tm["_v"], height=h, color=colours[m], label=m, xerr=err, capsize=2,
                    error_kw={"lw": 0.8})
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("relative drop (95 % CI)" if value == "rel_drop" else value)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_title(f"{len(order)} most damaging perturbations")
        ax.legend(loc="lower right")
        fig.tight_layout()
        return _save(fig, folder, name)


def _bar(ci) -> list[list[float]]:
    """Error-bar half-lengths ``[[below], [above]]`` of a confidence interval around its estimate.

    A percentile bootstrap CI of a ratio (the relative drop) need not contain the point estimate (few
    images, a skewed ratio); the bar then stops at the estimate on that side (length 0) instead of being
    negative, and a NaN bound draws no bar.
    """
    below, above = ci.value - ci.lo, ci.hi - ci.value
    return [[max(0.0, below) if math.isfinite(below) else 0.0], [max(0.0, above) if math.isfinite(above) else 0.0]]


def clean_vs_drop(overview: pd.DataFrame, by_mod: pd.DataFrame, folder: str, name: str, colours: dict) -> str | None:
    """Clean score (x) against relative drop (y): one large point per model (with both CIs), small points per
    (model, modality)."""
    if overview.empty or "rel_drop" not in overview:
        return None
    plt = _plt()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.0))
        if not by_mod.empty:
            for _, r in by_mod.iterrows():
                if math.isfinite(r["rel_drop"].value):
                    ax.scatter(r["clean"].value, r["rel_drop"].value, s=14, color=colours[r["model"]], alpha=0.5)
                    ax.annotate(r["modality"], (r["clean"].value, r["rel_drop"].value), fontsize=6,
                                xytext=(2, 2), textcoords="offset points", color="0.35")
        for _, r in overview.iterrows():
            c, d = r["clean"], r["rel_drop"]
            ax.errorbar(c.value, d.value, xerr=_bar(c), yerr=_bar(d), fmt="o", ms=7, color=colours[r["model"]],
                        capsize=3, label=r["model"])
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xlabel(f"clean {overview['metric'].iloc[0]}")
        ax.set_ylabel("relative drop (mean over perturbations)")
        ax.legend(loc="best")
        fig.tight_layout()
        return _save(fig, folder, name)


def attack_curves(cells: pd.DataFrame, folder: str, name: str, colours: dict) -> str | None:
    """Score against the attack budget ε (in 1/255), one panel per attack, one line per model, CI shaded."""
    metric = cells["metric"].iloc[0] if not cells.empty else ""
    return _panel_curves(cells, "name", "epsilon", "score", folder, name, colours, "ε (× 1/255)",
                         f"{metric} under attack", x_scale=255.0, marker="s")


def vlm_calibration(table: pd.DataFrame, folder: str, name: str, colours: dict) -> str | None:
    """VLM tasks: accuracy (with CI) and expected calibration error against severity level (0 = clean)."""
    if table.empty:
        return None
    plt = _plt()
    with plt.rc_context(STYLE):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
        for model, tm in table.groupby("model", sort=False):
            tm = tm.sort_values("level")
            _band(a1, tm["level"], tm["accuracy"], colours[model], model)
            a2.plot(tm["level"], tm["ece"], "-o", ms=3, color=colours[model], label=model)
        a1.set_ylabel("accuracy")
        a2.set_ylabel("ECE (10 bins)")
        for ax in (a1, a2):
            ax.set_xlabel("severity level (0 = clean)")
        a1.legend(loc="lower left")
        fig.tight_layout()
        return _save(fig, folder, name)
