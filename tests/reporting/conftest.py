"""Synthetic results folders in the exact format evaluate.py writes (``evaluation.results.COLUMNS``)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from medfm_hf.evaluation.results import COLUMNS

PERTS = {"gaussian_noise": ("ct", "dermoscopy"), "rotate": ("ct", "dermoscopy"), "derm_hair": ("dermoscopy",)}


def make_results(folder: str, model: str, *, seed: int, clean_level: float, slope: float, attacks: bool = False,
                 n_per_modality: int = 8, extra_meta: dict | None = None) -> pd.DataFrame:
    """A results folder: per-image clean IoU around ``clean_level``; IoU falls by about ``slope`` per level."""
    rng = np.random.default_rng(seed)
    rows = []
    images = [(f"demo/{m}_{i:02d}", m) for m in ("ct", "dermoscopy") for i in range(n_per_modality)]
    clean = {iid: float(np.clip(clean_level + rng.normal(0, 0.15), 0.05, 1)) for iid, _ in images}
    for iid, mod in images:
        rows.append({"image_id": iid, "source": "demo", "modality": mod, "kind": "clean", "name": "clean",
                     "level": 0, "iou": clean[iid]})
        for p, mods in PERTS.items():
            if mod not in mods:
                continue
            for lv in range(1, 6):
                v = clean[iid] - slope * lv * (2.0 if p == "derm_hair" else 1.0) + rng.normal(0, 0.01)
                rows.append({"image_id": iid, "source": "demo", "modality": mod, "kind": "perturbation", "name": p,
                             "level": lv, "strength": 0.1 * lv, "ssim": 1 - 0.1 * lv, "in_band": True,
                             "iou": float(np.clip(v, 0, 1))})
        if attacks:
            for a in ("fgsm", "pgd"):
                for lv in range(1, 6):
                    v = clean[iid] * (1 - 0.08 * lv * (1.3 if a == "pgd" else 1.0))
                    rows.append({"image_id": iid, "source": "demo", "modality": mod, "kind": "attack", "name": a,
                                 "level": lv, "epsilon": 2 * lv / 255, "steps": 5 if a == "pgd" else 1,
                                 "iou": float(v)})
    df = pd.DataFrame(rows)
    df["dice"] = 2 * df["iou"] / (1 + df["iou"])
    df["clean_iou"] = df["image_id"].map(clean)
    df["clean_dice"] = 2 * df["clean_iou"] / (1 + df["clean_iou"])
    df["iou_drop"] = df["clean_iou"] - df["iou"]
    df["dice_drop"] = df["clean_dice"] - df["dice"]
    df["seconds"] = 0.01
    df = df.reindex(columns=COLUMNS)
    os.makedirs(folder, exist_ok=True)
    df.to_parquet(os.path.join(folder, f"{model}_results.parquet"), index=False)
    meta = {"model": {"name": model, "checkpoint": None}, "dataset_path": "/data/medfm-robust",
            "git_revision": "0" * 40, "seeds": {"attack_seed": 0}, "versions": {"numpy": np.__version__},
            "finished": "2026-11-30T00:00:00Z", **(extra_meta or {})}
    with open(os.path.join(folder, "run.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    return df


@pytest.fixture(scope="session")
def results_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    a, b = str(root / "grabcut"), str(root / "small_sam")
    make_results(a, "grabcut", seed=1, clean_level=0.7, slope=0.03)
    make_results(b, "sam", seed=2, clean_level=0.6, slope=0.01, attacks=True)
    return [a, b]
