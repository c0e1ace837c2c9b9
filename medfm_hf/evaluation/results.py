"""Result tables of a segmentation run: per-sample rows, SUMMARY, STATS_BY_LEVEL, run.json, a card."""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict

import numpy as np
import pandas as pd

from medfm_hf.dataset_io import atomic_write_text

COLUMNS = ["image_id", "source", "modality", "kind", "name", "level", "strength", "ssim", "in_band", "epsilon",
           "steps", "iou", "dice", "clean_iou", "clean_dice", "iou_drop", "dice_drop", "seconds"]


def merge_parts(out: str, expected: list[str]) -> pd.DataFrame:
    """Concatenate the batch files of a run (exactly the ``expected`` batch keys), sorted, joined to clean."""
    from medfm_hf.evaluation.segmentation import KIND_ORDER, PARTS

    files = {os.path.basename(f)[: -len(".parquet")]: f for f in glob.glob(os.path.join(out, PARTS, "*.parquet"))}
    missing = [k for k in expected if k not in files]
    if missing:
        raise RuntimeError(f"{len(missing)} batches have no results (e.g. {missing[:3]}); rerun to finish them")
    df = pd.concat([pd.read_parquet(files[k]) for k in expected], ignore_index=True)
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


def _git_revision() -> str | None:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def _hardware(accelerator) -> dict:
    import torch

    hw = {"device": str(accelerator.device), "num_processes": accelerator.num_processes,
          "mixed_precision": accelerator.mixed_precision, "platform": platform.platform(),
          "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def write_results(args, bench, batches, accelerator, levels, attacks, model) -> dict:
    from medfm_hf.commands.info import versions

    out = args.output
    df = merge_parts(out, [b.key for b in batches])
    prefix = os.path.join(out, args.model)
    tmp = f"{prefix}_results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, f"{prefix}_results.parquet")
    atomic_write_text(f"{prefix}_results.csv", df.to_csv(index=False, float_format="%.6g"))
    summ = summary_table(df)
    atomic_write_text(f"{prefix}_SUMMARY.csv", summ.to_csv(index=False, float_format="%.6g"))
    stats = stats_by_level(df)
    atomic_write_text(f"{prefix}_STATS_BY_LEVEL.csv", stats.to_csv(index=False, float_format="%.6g"))
    run = {"arguments": asdict(args), "levels": levels, "attacks": attacks, "versions": versions(),
           "git_revision": _git_revision(), "seeds": {"attack_seed": args.seed},
           "hardware": _hardware(accelerator), "dataset_path": bench.path,
           "model": {"name": args.model, "pretrained": bool(getattr(model, "pretrained", False)),
                     "checkpoint": args.checkpoint},
           "samples": int(len(df)), "batches": len(batches), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime())}
    run["arguments"].pop("push_to_hub", None)
    atomic_write_text(os.path.join(out, "run.json"), json.dumps(run, indent=2, sort_keys=True, default=str))
    _write_card(out, args, summ, stats)
    if args.push_to_hub:
        from medfm_hf.benchmark.hub import push_folder

        push_folder(out, args.push_to_hub)
    return {"results": df, "summary": summ, "stats": stats, "run": run}


def _write_card(out, args, summ, stats) -> None:
    from medfm_hf.dataset_io import format_table

    s = summ.copy()
    for c in ("iou", "dice", "iou_drop", "dice_drop", "rel_iou_drop"):
        s[c] = s[c].map(lambda v: f"{v:.4f}")
    card = f"""---
configs:
- config_name: results
  data_files:
  - split: test
    path: {args.model}_results.parquet
tags:
- medfm-robust
- robustness
---

# Robustness results: {args.model}

Per-sample IoU and Dice of `{args.model}` on `{args.dataset}` (clean, perturbed, attacked), each row joined
to the clean prediction of the same image. Files: `{args.model}_results.parquet` / `.csv` (per sample),
`{args.model}_SUMMARY.csv`, `{args.model}_STATS_BY_LEVEL.csv`, `run.json` (arguments, versions, hardware).

## Summary

{format_table(s.to_dict("records"), markdown=True)}
"""
    atomic_write_text(os.path.join(out, "README.md"), card)
