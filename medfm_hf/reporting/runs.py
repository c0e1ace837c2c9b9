"""The tables and card of one segmentation run: ``SUMMARY``, ``STATS_BY_LEVEL`` and the results ``README.md``
(written by the evaluator next to the per-sample rows)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from medfm_hf.io import atomic_write_text
from medfm_hf.reporting.formats import summary_text

SUMMARY_VALUES = ("iou", "dice", "iou_drop", "dice_drop", "rel_iou_drop")
#: A perturbed row counts as "target visible" when at least this fraction of its mask is not occluded (blood,
#: shadow, vignette, blink, haze above the occlusion opacity); rows of perturbations that occlude nothing count.
VISIBLE_FRACTION = 0.5


def visible_rows(df: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows whose target is visible (``target_visible_fraction`` >= 0.5 or not recorded)."""
    if "target_visible_fraction" not in df:
        return pd.Series(True, index=df.index)
    tvf = pd.to_numeric(df["target_visible_fraction"], errors="coerce")
    return tvf.isna() | (tvf >= VISIBLE_FRACTION)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """``Clean`` row, one row per perturbation/attack (mean over its levels), ``Avg`` and ``Delta``.

    ``iou_visible`` is the same mean IoU over the rows whose target stays visible (:func:`visible_rows`)."""
    rows = []
    clean = df[df["kind"] == "clean"]
    rows.append({"name": "Clean", "kind": "clean", "levels": 0, "n": len(clean), "iou": clean["iou"].mean(),
                 "dice": clean["dice"].mean(), "iou_drop": 0.0, "dice_drop": 0.0, "rel_iou_drop": 0.0})
    other = df[df["kind"] != "clean"]
    per = []
    for (kind, name), g in other.groupby(["kind", "name"], sort=False):
        lv = g.groupby("level")[["iou", "dice", "iou_drop", "dice_drop", "clean_iou"]].mean()
        clean_same = lv["clean_iou"].mean()  # clean IoU of the same images (a config may hold some modalities)
        per.append({"name": name, "kind": kind, "levels": len(lv), "n": len(g), "iou": lv["iou"].mean(),
                    "dice": lv["dice"].mean(), "iou_drop": lv["iou_drop"].mean(), "dice_drop": lv["dice_drop"].mean(),
                    "rel_iou_drop": lv["iou_drop"].mean() / clean_same if clean_same else float("nan"),
                    "iou_visible": g[visible_rows(g)].groupby("level")["iou"].mean().mean()})
    rows += per
    if per:
        avg = {k: float(np.mean([r[k] for r in per])) for k in SUMMARY_VALUES}
        rows.append({"name": "Avg", "kind": "all", "levels": 0, "n": sum(r["n"] for r in per), **avg})
        rows.append({"name": "Delta", "kind": "all", "levels": 0, "n": 0, "iou": rows[0]["iou"] - avg["iou"],
                     "dice": rows[0]["dice"] - avg["dice"], "iou_drop": avg["iou_drop"], "dice_drop": avg["dice_drop"],
                     "rel_iou_drop": avg["rel_iou_drop"]})
    return pd.DataFrame(rows)


def stats_by_level(df: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, name, level): n, IoU mean/std, Dice, drops, relative drop, mean SSIM, in-band rate, ε, and the
    same IoU and drop over the rows whose target stays visible (``n_visible``, ``iou_visible``,
    ``iou_drop_visible``; see :data:`VISIBLE_FRACTION`)."""
    other = df[df["kind"] != "clean"]
    if other.empty:
        return pd.DataFrame(columns=["kind", "name", "level", "n", "iou", "iou_std", "dice", "iou_drop", "dice_drop",
                                     "rel_iou_drop", "mean_ssim", "in_band_rate", "epsilon", "n_visible",
                                     "iou_visible", "iou_drop_visible"])
    other = other.assign(_vis=visible_rows(other))
    other = other.assign(_iou_vis=other["iou"].where(other["_vis"]), _drop_vis=other["iou_drop"].where(other["_vis"]))
    g = other.groupby(["kind", "name", "level"], sort=False)
    t = g.agg(n=("iou", "size"), iou=("iou", "mean"), iou_std=("iou", "std"), dice=("dice", "mean"),
              iou_drop=("iou_drop", "mean"), dice_drop=("dice_drop", "mean"), clean_iou=("clean_iou", "mean"),
              mean_ssim=("ssim", "mean"), in_band_rate=("in_band", lambda s: s.astype(float).mean()),
              epsilon=("epsilon", "first"), n_visible=("_vis", "sum"), iou_visible=("_iou_vis", "mean"),
              iou_drop_visible=("_drop_vis", "mean")).reset_index()
    t["rel_iou_drop"] = t["iou_drop"] / t["clean_iou"]
    return t.drop(columns=["clean_iou"])


def print_summary(summary: pd.DataFrame) -> None:
    """The run's summary on the terminal (command-line front ends only)."""
    print(summary_text(summary))


def card_front_matter(results_file: str, *tags: str) -> str:
    """The YAML front matter of a results folder's ``README.md``: one ``results`` config over ``results_file``
    (so ``load_dataset(folder)`` gives the per-sample rows) and the ``medfm-robust`` tags."""
    tag_lines = "".join(f"- {t}\n" for t in ("medfm-robust", "robustness", *tags))
    return f"""---
configs:
- config_name: results
  data_files:
  - split: test
    path: {results_file}
tags:
{tag_lines}---
"""


def write_results_card(out: str, model: str, dataset: str, summary: pd.DataFrame) -> str:
    """The ``README.md`` of a results folder: a dataset card (``load_dataset(out)`` gives the per-sample rows)
    with the run's summary table."""
    card = card_front_matter(f"{model}_results.parquet") + f"""
# Robustness results: {model}

Per-sample IoU and Dice of `{model}` on `{dataset}` (clean, perturbed, attacked), each row joined
to the clean prediction of the same image. Files: `{model}_results.parquet` / `.csv` (per sample),
`{model}_SUMMARY.csv`, `{model}_STATS_BY_LEVEL.csv`, `run.json` (arguments, versions, hardware).
Tables with confidence intervals and figures: `medfm-robust report {os.path.basename(out.rstrip(os.sep)) or out} --out report`.

## Summary

{summary_text(summary, markdown=True)}
"""
    path = os.path.join(out, "README.md")
    atomic_write_text(path, card)
    return path
