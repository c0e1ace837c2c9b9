"""Tables of a benchmark build's calibration: per cell, per (perturbation, level, modality), per config and
per perturbation (what ``build`` prints, the dataset card and the demo report show)."""

from __future__ import annotations

import pandas as pd

CELL_COLUMNS = ["source", "perturbation", "image_id", "modality", "level", "ssim", "in_band", "evaluations",
                "strength", "ssim_frame", "reason", "target_visible_fraction"]
REPORT_COLUMNS = ["perturbation", "level", "modality", "cells", "in_band_rate", "mean_ssim", "mean_ssim_frame",
                  "evaluations_per_cell", "seconds_per_cell", "reasons"]


def calibration_cells(infos: list[dict]) -> pd.DataFrame:
    """One row per calibrated (image, perturbation, level) cell of the shards ``infos``."""
    rows = [{"source": info["source"], "perturbation": info["perturbation"], **c} for info in infos
            for c in info["cells"]]
    return pd.DataFrame(rows, columns=CELL_COLUMNS)  # shards of older builds lack the newer columns: NaN


def calibration_report(infos: list[dict]) -> pd.DataFrame:
    """One row per (perturbation, level, modality): cells, in-band rate, mean SSIM (over the field of view) and
    whole-frame SSIM, evaluations per cell, the shard time spread over its cells, and why cells missed their
    band (``reason:count``: ``ceiling``, ``saturated``, ``discrete``)."""
    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    secs = {(i["source"], i["perturbation"]): i["seconds"] / max(1, len(i["cells"])) for i in infos}
    cells["seconds"] = [secs[(s, p)] for s, p in zip(cells["source"], cells["perturbation"])]
    cells["reason"] = cells["reason"].fillna("")
    g = cells.groupby(["perturbation", "level", "modality"], sort=True)
    rep = g.agg(cells=("in_band", "size"), in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean"),
                mean_ssim_frame=("ssim_frame", "mean"), evaluations_per_cell=("evaluations", "mean"),
                seconds_per_cell=("seconds", "mean"), reasons=("reason", _reason_counts)).reset_index()
    return rep[REPORT_COLUMNS]


def _reason_counts(reasons: pd.Series) -> str:
    counts = reasons[reasons != ""].value_counts()
    return ", ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def config_table(infos: list[dict]) -> pd.DataFrame:
    """One row per config (perturbation and level, in that order): rows, modalities, in-band rate, mean SSIM."""
    from medfm_hf.benchmark.layout import config_name

    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=["config", "rows", "modalities", "in_band_rate", "mean_ssim"])
    g = cells.groupby(["perturbation", "level"], sort=True)
    out = g.agg(rows=("in_band", "size"), modalities=("modality", lambda s: ", ".join(sorted(set(s)))),
                in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean")).reset_index()
    out.insert(0, "config", [config_name(p, int(lv)) for p, lv in zip(out["perturbation"], out["level"])])
    return out.drop(columns=["perturbation", "level"])


def by_perturbation(report: pd.DataFrame) -> pd.DataFrame:
    """The calibration report summed per perturbation: cells, in-band rate and evaluations per cell, each
    weighted by the cells behind it."""
    if report.empty:
        return pd.DataFrame(columns=["perturbation", "cells", "in_band", "evals_per_cell"])
    w = report.assign(_ib=report["in_band_rate"] * report["cells"], _ev=report["evaluations_per_cell"] * report["cells"])
    g = w.groupby("perturbation", sort=True)[["cells", "_ib", "_ev"]].sum().reset_index()
    return pd.DataFrame({"perturbation": g["perturbation"], "cells": g["cells"].astype(int),
                         "in_band": g["_ib"] / g["cells"], "evals_per_cell": g["_ev"] / g["cells"]})


def in_band_overall(report: pd.DataFrame) -> float:
    """Share of all calibrated cells whose SSIM fell in its level's band."""
    total = report["cells"].sum()
    return float((report["in_band_rate"] * report["cells"]).sum() / total) if total else float("nan")
