"""The calibration report: hit rate per perturbation x level x modality, evaluations, time."""

from __future__ import annotations

import pandas as pd


def calibration_cells(infos: list[dict]) -> pd.DataFrame:
    rows = []
    for info in infos:
        for c in info["cells"]:
            rows.append({"source": info["source"], "perturbation": info["perturbation"], **c})
    cols = ["source", "perturbation", "image_id", "modality", "level", "ssim", "in_band", "evaluations", "strength",
            "ssim_frame", "reason", "target_visible_fraction"]
    return pd.DataFrame(rows, columns=cols).reindex(columns=cols)


def calibration_report(infos: list[dict]) -> pd.DataFrame:
    """One row per (perturbation, level, modality): cells, in-band rate, mean SSIM, evaluations per cell,
    and the shard time spread over its cells."""
    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=["perturbation", "level", "modality", "cells", "in_band_rate", "mean_ssim",
                                     "mean_ssim_frame", "evaluations_per_cell", "seconds_per_cell", "reasons"])
    secs = {}
    for info in infos:
        n = max(1, len(info["cells"]))
        secs[(info["source"], info["perturbation"])] = info["seconds"] / n
    cells["seconds"] = [secs[(s, p)] for s, p in zip(cells["source"], cells["perturbation"])]
    cells["reason"] = cells["reason"].fillna("")
    g = cells.groupby(["perturbation", "level", "modality"], sort=True)
    rep = g.agg(cells=("in_band", "size"), in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean"),
                mean_ssim_frame=("ssim_frame", "mean"), evaluations_per_cell=("evaluations", "mean"),
                seconds_per_cell=("seconds", "mean"),
                reasons=("reason", lambda s: ", ".join(f"{k}:{v}" for k, v in sorted(s[s != ""].value_counts().items())))
                ).reset_index()
    return rep


def config_table(infos: list[dict]) -> pd.DataFrame:
    """One row per config: rows, modalities, in-band rate, mean SSIM."""
    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=["config", "rows", "modalities", "in_band_rate", "mean_ssim"])
    cells["config"] = cells["perturbation"] + "_l" + cells["level"].astype(str)
    g = cells.groupby("config", sort=False)
    out = g.agg(rows=("in_band", "size"), modalities=("modality", lambda s: ", ".join(sorted(set(s)))),
                in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean")).reset_index()
    return out.sort_values("config", key=lambda s: s.map(_sort_key)).reset_index(drop=True)


def _sort_key(config: str):
    head, _, lv = config.rpartition("_l")
    return (head, int(lv))
