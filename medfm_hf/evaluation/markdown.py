"""Markdown reports with plots."""

from __future__ import annotations

import os

import pandas as pd

from medfm_hf.dataset_io import atomic_write_text, format_table


def _fmt(df: pd.DataFrame) -> str:
    d = df.copy()
    for c in d.columns:
        if d[c].dtype.kind == "f":
            d[c] = d[c].map(lambda v: f"{v:.4f}")
    return format_table(d.to_dict("records"), markdown=True)


def write_demo_report(out: str, runs: dict, train_info: dict, build: dict, in_band: float, timings: dict) -> str:
    from medfm_hf.evaluation.report import severity_curves

    figs = {}
    for name, res in runs.items():
        rel = f"severity_{name}.png"
        severity_curves(res["stats"], os.path.join(out, rel), title=f"{name}: IoU drop by severity level")
        figs[name] = rel
    rep = build["report"]
    per_pert = rep.groupby("perturbation").apply(
        lambda g: pd.Series({"cells": int(g["cells"].sum()),
                             "in_band": (g["in_band_rate"] * g["cells"]).sum() / g["cells"].sum(),
                             "evals_per_cell": (g["evaluations_per_cell"] * g["cells"]).sum() / g["cells"].sum()}),
        include_groups=False).reset_index()
    per_pert["cells"] = per_pert["cells"].astype(int)
    per_pert["in_band"] = per_pert["in_band"].map(lambda v: f"{v:.1%}")
    per_pert["evals_per_cell"] = per_pert["evals_per_cell"].map(lambda v: f"{v:.2f}")
    sections = []
    for name, res in runs.items():
        sections.append(f"### {name}\n\n{_fmt(res['summary'])}\n\n![severity curves]({figs[name]})\n")
    text = f"""# medfm_hf demo report

Everything below was computed on the embedded demo set (synthetic lesions on real and procedural
backgrounds; see `medfm-robust/README.md`). The numbers exercise the pipeline; they say nothing clinical.

## Benchmark

{build['records']} clean records; {build['shards']} (source x perturbation) shards; {in_band:.1%} of
{int(rep['cells'].sum())} (image, perturbation, level) cells calibrated into their SSIM band.
Folder: `medfm-robust/` (load with `datasets.load_dataset("{out}/medfm-robust", "<config>")`).

{_fmt(per_pert)}

## Models

- **grabcut**: OpenCV GrabCut initialised with the box (no weights).
- **small_sam**: {train_info['architecture']}, trained {train_info['steps']} steps
  ({train_info['seconds']:.0f} s) on the demo train split, selected on the validation split
  (best validation IoU {train_info['best_val_iou']:.3f}).

## Results

{chr(10).join(sections)}

## Timings (seconds)

{format_table([{"step": k, "seconds": f"{v:.0f}"} for k, v in timings.items()], markdown=True)}
"""
    path = os.path.join(out, "REPORT.md")
    atomic_write_text(path, text)
    return path
