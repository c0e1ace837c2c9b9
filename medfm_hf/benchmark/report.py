"""The calibration report: hit rate per perturbation x level x modality, evaluations, time."""

from __future__ import annotations

import pandas as pd

from medfm_hf.benchmark.layout import config_name, parse_config_name


def calibration_cells(infos: list[dict]) -> pd.DataFrame:
    rows = []
    for info in infos:
        for c in info["cells"]:
            rows.append({"source": info["source"], "perturbation": info["perturbation"], **c})
    cols = ["source", "perturbation", "image_id", "modality", "level", "ssim", "in_band", "evaluations", "strength"]
    return pd.DataFrame(rows, columns=cols)


def calibration_report(infos: list[dict]) -> pd.DataFrame:
    """One row per (perturbation, level, modality): cells, in-band rate, mean SSIM, evaluations per cell,
    and the shard time spread over its cells."""
    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=["perturbation", "level", "modality", "cells", "in_band_rate", "mean_ssim",
                                     "evaluations_per_cell", "seconds_per_cell"])
    secs = {}
    for info in infos:
        n = max(1, len(info["cells"]))
        secs[(info["source"], info["perturbation"])] = info["seconds"] / n
    cells["seconds"] = [secs[(s, p)] for s, p in zip(cells["source"], cells["perturbation"])]
    g = cells.groupby(["perturbation", "level", "modality"], sort=True)
    rep = g.agg(cells=("in_band", "size"), in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean"),
                evaluations_per_cell=("evaluations", "mean"), seconds_per_cell=("seconds", "mean")).reset_index()
    return rep


def config_table(infos: list[dict]) -> pd.DataFrame:
    """One row per config: rows, modalities, in-band rate, mean SSIM."""
    cells = calibration_cells(infos)
    if cells.empty:
        return pd.DataFrame(columns=["config", "rows", "modalities", "in_band_rate", "mean_ssim"])
    cells["config"] = [config_name(p, lv) for p, lv in zip(cells["perturbation"], cells["level"])]
    g = cells.groupby("config", sort=False)
    out = g.agg(rows=("in_band", "size"), modalities=("modality", lambda s: ", ".join(sorted(set(s)))),
                in_band_rate=("in_band", "mean"), mean_ssim=("ssim", "mean")).reset_index()
    return out.sort_values("config", key=lambda s: s.map(_sort_key)).reset_index(drop=True)


def _sort_key(config: str):
    return parse_config_name(config) or (config, 0)
