"""The demo's selection and its LiteMedSAM report, from hand-made result frames (no model runs here)."""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd
import pytest

from medfm_hf.commands import demo
from medfm_hf.evaluation.results import COLUMNS
from medfm_hf.reporting.demo import report_tables, write_demo_report


def _rows(model_iou: dict, kind: str, name: str, level: int, drop: float, **extra) -> list[dict]:
    rows = []
    for image_id, (modality, clean) in model_iou.items():
        rows.append({"image_id": image_id, "modality": modality, "kind": kind, "name": name, "level": level,
                     "iou": clean - drop, "clean_iou": clean, "iou_drop": drop, "epsilon": extra.get("epsilon"),
                     "steps": extra.get("steps"), "in_band": extra.get("in_band", True)})
    return rows


def _runs() -> dict:
    imgs = {"demo/ct_00": ("ct", 0.9), "demo/fundus_00": ("fundus", 0.7)}
    gc_imgs = {"demo/ct_00": ("ct", 0.1), "demo/fundus_00": ("fundus", 0.5)}
    lite = (_rows(imgs, "clean", "clean", 0, 0.0) + _rows(imgs, "perturbation", "blur", 1, 0.02)
            + _rows(imgs, "perturbation", "blur", 5, 0.2, in_band=False) + _rows(imgs, "perturbation", "noise", 1, 0.01)
            + _rows(imgs, "perturbation", "noise", 5, 0.05))
    gc = (_rows(gc_imgs, "clean", "clean", 0, 0.0) + _rows(gc_imgs, "perturbation", "blur", 1, 0.0)
          + _rows(gc_imgs, "perturbation", "blur", 5, 0.1))
    one = {"demo/ct_00": ("ct", 0.9)}
    att = (_rows(one, "clean", "clean", 0, 0.0) + _rows(one, "attack", "fgsm", 1, 0.1, epsilon=2 / 255, steps=1)
           + _rows(one, "attack", "pgd", 1, 0.4, epsilon=2 / 255, steps=3)
           + _rows(one, "attack", "pgd", 5, 0.8, epsilon=10 / 255, steps=15))

    def run(rows):
        df = pd.DataFrame(rows)
        stats = (df[df.kind != "clean"].groupby(["kind", "name", "level"], as_index=False)["iou_drop"].mean())
        return {"results": df, "stats": stats}

    return {"grabcut": run(gc), "medsam_lite": run(lite), "medsam_lite_attacks": run(att)}


def test_tables_aggregate_per_modality_perturbation_and_attack():
    tabs = report_tables(_runs())
    clean = tabs["clean"].set_index("modality")
    assert clean.loc["ct", "LiteMedSAM IoU"] == pytest.approx(0.9)
    assert clean.loc["fundus", "GrabCut IoU"] == pytest.approx(0.5)
    assert clean.loc["**all**", "LiteMedSAM IoU"] == pytest.approx(0.8)
    pert = tabs["perturbations"].set_index("perturbation")
    assert list(pert.index) == ["blur", "noise"]  # most harmful first
    assert pert.loc["blur", "drop L5"] == pytest.approx(0.2)
    assert pert.loc["blur", "GrabCut mean drop"] == pytest.approx(0.05)
    att = tabs["attacks"].set_index(["attack", "level"])
    assert att.loc[("pgd", 5), "epsilon"] == "10/255" and att.loc[("pgd", 5), "steps"] == 15
    h = tabs["headline"]
    assert h["pgd_max_drop"] == pytest.approx(0.8) and h["fgsm_max_drop"] == pytest.approx(0.1)
    assert h["worst_perturbation"] == "blur"
    assert (h["rows_in_band"], h["rows_perturbed"]) == (6, 8)  # blur L5 stopped at its ceiling on both images


def _with_folders(runs: dict, root) -> dict:
    """Write each run's rows as an evaluator results folder (what the report command reads)."""
    for name, res in runs.items():
        folder = os.path.join(str(root), name)
        os.makedirs(folder)
        df = res["results"].assign(source="demo", dice=res["results"]["iou"], clean_dice=res["results"]["clean_iou"],
                                   dice_drop=res["results"]["iou_drop"], seconds=0.1)
        df.reindex(columns=COLUMNS).to_parquet(os.path.join(folder, f"{name}_results.parquet"), index=False)
        with open(os.path.join(folder, "run.json"), "w", encoding="utf-8") as fh:
            json.dump({"model": {"name": name}}, fh)
        res["output"] = folder
    return runs


def test_report_headlines_litemedsam(tmp_path):
    build = {"records": 140, "shards": 2, "report": pd.DataFrame({"cells": [10, 10], "in_band_rate": [1.0, 0.9]})}
    out = tmp_path / "demo"
    out.mkdir()
    path = write_demo_report(str(out), _with_folders(_runs(), tmp_path / "results"), build, 0.95,
                             {"build": 1.0, "total": 2.0}, demo.DEFAULT_SELECTION)
    text = open(path, encoding="utf-8").read()
    assert text.startswith("# medfm_hf demo report: LiteMedSAM")
    assert "Clean IoU: LiteMedSAM 0.800, GrabCut 0.300" in text
    assert "PGD by up to 0.800" in text and "synthetic" in text and "at most ε = 2/255, 10/255" in text
    assert "hurts 7.3x more than the most harmful calibrated perturbation" in text  # 0.8 vs blur 0.11
    assert (out / "report" / "report.html").stat().st_size > 1000  # written by the report command
    assert "](report/figures/" in text  # its figures are embedded in REPORT.md
    assert "small SAM" not in text and "small_sam" not in text
    assert "6 of the 8 perturbed rows reached their band" in text


def test_selection_default_full_and_overrides():
    ns = argparse.Namespace(full=False, images=None, levels=None, attack_images=None, attack_levels=None)
    assert demo.selection_from_args(ns) == demo.DEFAULT_SELECTION
    ns.full = True
    assert demo.selection_from_args(ns).images == "all"
    ns.full, ns.levels = False, "2"
    sel = demo.selection_from_args(ns)
    assert sel.levels == "2" and sel.images == demo.DEFAULT_SELECTION.images and "levels=2" in sel.description


def test_each_run_setting_has_its_own_results_folder():
    assert demo.run_tag(demo.DEFAULT_SELECTION, "x", "y") == "default"
    assert demo.run_tag(demo.FULL_SELECTION, "x", "y") == "full"
    ns = argparse.Namespace(full=False, images=None, levels="3", attack_images=None, attack_levels=None)
    sel = demo.selection_from_args(ns)
    tag = demo.run_tag(sel, sel.images, sel.levels)
    assert tag.startswith("custom-") and tag == demo.run_tag(sel, sel.images, sel.levels)
    assert tag != demo.run_tag(sel, sel.attack_images, sel.attack_levels)
