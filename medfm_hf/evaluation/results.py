"""Result tables of a segmentation run: per-sample rows, SUMMARY, STATS_BY_LEVEL, run.json, a card."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd

from medfm_hf.io import atomic_write_parquet, atomic_write_text

COLUMNS = ["image_id", "source", "modality", "kind", "name", "level", "strength", "ssim", "in_band", "epsilon",
           "steps", "iou", "dice", "clean_iou", "clean_dice", "iou_drop", "dice_drop", "seconds"]
KIND_ORDER = {"clean": 0, "perturbation": 1, "attack": 2}
PART_KEY = "medfm_run_key"  # metadata key of a part file: the run it belongs to


def part_run_key(path: str) -> str | None:
    """The run key stored in a part file's metadata (``None`` if missing, unreadable or absent)."""
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # noqa: BLE001 - a damaged part is simply redone
        return None
    value = meta.get(PART_KEY.encode())
    return value.decode() if value else None


def merge_parts(plan) -> pd.DataFrame:
    """Concatenate the part files of ``plan``'s batches (all of the same run), sorted, joined to clean."""
    expected = [b.key for b in plan.batches]
    missing = [k for k in expected if not os.path.exists(plan.part_path(k))]
    if missing:
        raise RuntimeError(f"{len(missing)} batches have no results (e.g. {missing[:3]}); rerun to finish them")
    foreign = [k for k in expected if part_run_key(plan.part_path(k)) != plan.run_key]
    if foreign:
        raise RuntimeError(f"{len(foreign)} result parts belong to another run (e.g. {foreign[0]}); rerun with "
                           "--overwrite")
    df = pd.concat([pd.read_parquet(plan.part_path(k)) for k in expected], ignore_index=True)
    clean = df[df["kind"] == "clean"].set_index("image_id")
    df["clean_iou"] = df["image_id"].map(clean["iou"])
    df["clean_dice"] = df["image_id"].map(clean["dice"])
    df["iou_drop"] = df["clean_iou"] - df["iou"]
    df["dice_drop"] = df["clean_dice"] - df["dice"]
    df["_k"] = df["kind"].map(KIND_ORDER)
    df = df.sort_values(["_k", "name", "level", "image_id"], kind="stable").reset_index(drop=True)
    if df.duplicated(["kind", "name", "level", "image_id"]).any():
        raise RuntimeError("duplicate result rows; the results folder is corrupt")
    return df[COLUMNS]


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """``Clean`` row, one row per perturbation/attack (mean over its levels), ``Avg`` and ``Delta``."""
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
                    "rel_iou_drop": lv["iou_drop"].mean() / clean_same if clean_same else float("nan")})
    rows += per
    if per:
        avg = {k: float(np.mean([r[k] for r in per])) for k in ("iou", "dice", "iou_drop", "dice_drop", "rel_iou_drop")}
        rows.append({"name": "Avg", "kind": "all", "levels": 0, "n": sum(r["n"] for r in per), **avg})
        rows.append({"name": "Delta", "kind": "all", "levels": 0, "n": 0, "iou": rows[0]["iou"] - avg["iou"],
                     "dice": rows[0]["dice"] - avg["dice"], "iou_drop": avg["iou_drop"], "dice_drop": avg["dice_drop"],
                     "rel_iou_drop": avg["rel_iou_drop"]})
    return pd.DataFrame(rows)


def stats_by_level(df: pd.DataFrame) -> pd.DataFrame:
    other = df[df["kind"] != "clean"]
    if other.empty:
        return pd.DataFrame(columns=["kind", "name", "level", "n", "iou", "iou_std", "dice", "iou_drop", "dice_drop",
                                     "rel_iou_drop", "mean_ssim", "in_band_rate", "epsilon"])
    g = other.groupby(["kind", "name", "level"], sort=False)
    t = g.agg(n=("iou", "size"), iou=("iou", "mean"), iou_std=("iou", "std"), dice=("dice", "mean"),
              iou_drop=("iou_drop", "mean"), dice_drop=("dice_drop", "mean"), clean_iou=("clean_iou", "mean"),
              mean_ssim=("ssim", "mean"), in_band_rate=("in_band", lambda s: s.astype(float).mean()),
              epsilon=("epsilon", "first")).reset_index()
    t["rel_iou_drop"] = t["iou_drop"] / t["clean_iou"]
    return t.drop(columns=["clean_iou"])


def write_results(plan, reader, accelerator, model) -> dict:
    """Merge the parts and write the tables, ``run.json`` and the card; returns them."""
    from medfm_hf.env import git_revision, hardware, versions

    out = plan.output
    df = merge_parts(plan)
    prefix = os.path.join(out, plan.model)
    atomic_write_parquet(df, f"{prefix}_results.parquet")
    atomic_write_text(f"{prefix}_results.csv", df.to_csv(index=False, float_format="%.6g"))
    summ = summary_table(df)
    atomic_write_text(f"{prefix}_SUMMARY.csv", summ.to_csv(index=False, float_format="%.6g"))
    stats = stats_by_level(df)
    atomic_write_text(f"{prefix}_STATS_BY_LEVEL.csv", stats.to_csv(index=False, float_format="%.6g"))
    arguments = {**plan.settings(), "dataset": plan.dataset, "attacks": ",".join(plan.attacks),
                 "levels": ",".join(map(str, plan.levels)), "mixed_precision": plan.mixed_precision}
    run = {"task": plan.task, "arguments": arguments, "levels": list(plan.levels), "attacks": list(plan.attacks),
           "configs": list(plan.configs), "versions": versions(), "git_revision": git_revision(),
           "seeds": {"attack_seed": plan.seed}, "hardware": hardware(accelerator), "dataset_path": plan.dataset_path,
           "dataset": {"name": plan.dataset, "fingerprint": plan.fingerprints["dataset"],
                       "revision": plan.fingerprints.get("dataset_revision"),
                       "complete": plan.fingerprints["dataset_complete"],
                       "allow_incomplete": plan.allow_incomplete},
           "model": {"name": plan.model, "pretrained": bool(getattr(model, "pretrained", False)),
                     "checkpoint": plan.checkpoint, "fingerprint": plan.fingerprints["checkpoint"]},
           "run_key": plan.run_key, "samples": int(len(df)), "batches": len(plan.batches),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(os.path.join(out, "run.json"), json.dumps(run, indent=2, sort_keys=True, default=str))
    _write_card(out, plan, summ, stats)
    if plan.push_to_hub:
        from medfm_hf.benchmark.hub import push_folder

        push_folder(out, plan.push_to_hub)
    return {"results": df, "summary": summ, "stats": stats, "run": run}


def _write_card(out, plan, summ, stats) -> None:
    from medfm_hf.dataset_io import format_table

    s = summ.copy()
    for c in ("iou", "dice", "iou_drop", "dice_drop", "rel_iou_drop"):
        s[c] = s[c].map(lambda v: f"{v:.4f}")
    card = f"""---
configs:
- config_name: results
  data_files:
  - split: test
    path: {plan.model}_results.parquet
tags:
- medfm-robust
- robustness
---

# Robustness results: {plan.model}

Per-sample IoU and Dice of `{plan.model}` on `{plan.dataset}` (clean, perturbed, attacked), each row joined
to the clean prediction of the same image. Files: `{plan.model}_results.parquet` / `.csv` (per sample),
`{plan.model}_SUMMARY.csv`, `{plan.model}_STATS_BY_LEVEL.csv`, `run.json` (arguments, versions, hardware).

## Summary

{format_table(s.to_dict("records"), markdown=True)}
"""
    atomic_write_text(os.path.join(out, "README.md"), card)
