"""Result tables of a segmentation run: per-sample rows, SUMMARY, STATS_BY_LEVEL, run.json, a card."""

from __future__ import annotations

import glob
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict

import pandas as pd

from medfm_hf.dataset_io import atomic_write_text
from medfm_hf.reporting.runs import stats_by_level, summary_table, write_results_card

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
    write_results_card(out, args.model, args.dataset, summ)
    if args.push_to_hub:
        from medfm_hf.benchmark.hub import push_folder

        push_folder(out, args.push_to_hub)
    return {"results": df, "summary": summ, "stats": stats, "run": run}
