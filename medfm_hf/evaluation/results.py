"""Result tables of a segmentation run: per-sample rows, SUMMARY, STATS_BY_LEVEL, run.json, a card."""

from __future__ import annotations

import json
import os
import time

import pandas as pd

from medfm_hf.io import atomic_write_parquet, atomic_write_text
from medfm_hf.reporting.runs import stats_by_level, summary_table, write_results_card

COLUMNS = ["image_id", "source", "modality", "kind", "name", "level", "strength", "ssim", "in_band",
           "target_visible_fraction", "epsilon",
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


def read_parts(plan) -> pd.DataFrame:
    """The part files of ``plan``'s batches concatenated; refuses missing parts and parts of another run."""
    expected = [b.key for b in plan.batches]
    missing = [k for k in expected if not os.path.exists(plan.part_path(k))]
    if missing:
        raise RuntimeError(f"{len(missing)} batches have no results (e.g. {missing[:3]}); rerun to finish them")
    foreign = [k for k in expected if part_run_key(plan.part_path(k)) != plan.run_key]
    if foreign:
        raise RuntimeError(f"{len(foreign)} result parts belong to another run (e.g. {foreign[0]}); rerun with "
                           "--overwrite")
    return pd.concat([pd.read_parquet(plan.part_path(k)) for k in expected], ignore_index=True)


def merge_parts(plan) -> pd.DataFrame:
    """Concatenate the part files of ``plan``'s batches (all of the same run), sorted, joined to clean."""
    df = read_parts(plan)
    clean = df[df["kind"] == "clean"].set_index("image_id")
    df["clean_iou"] = df["image_id"].map(clean["iou"])
    df["clean_dice"] = df["image_id"].map(clean["dice"])
    df["iou_drop"] = df["clean_iou"] - df["iou"]
    df["dice_drop"] = df["clean_dice"] - df["dice"]
    df["_k"] = df["kind"].map(KIND_ORDER)
    df = df.sort_values(["_k", "name", "level", "image_id"], kind="stable").reset_index(drop=True)
    if df.duplicated(["kind", "name", "level", "image_id"]).any():
        raise RuntimeError("duplicate result rows; the results folder is corrupt")
    return df.reindex(columns=COLUMNS)


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
    write_results_card(out, plan.model, plan.dataset, summ)
    if plan.push_to_hub:
        from medfm_hf.benchmark.hub import push_folder

        push_folder(out, plan.push_to_hub)
    return {"results": df, "summary": summ, "stats": stats, "run": run}
