"""Build the benchmark dataset folder: ``clean`` + one ``{perturbation}_l{level}`` config each.

Work is sharded by (source, perturbation). Each shard calibrates every clean **test** image of that
source whose modality the perturbation applies to, then writes one parquet file per level,
``data/<perturbation>_l<level>/test-<source>-00000-of-00001.parquet``, atomically, followed by a marker in
``.medfm/shards/``. An interrupted build resumes from the markers; nothing is written twice, and the
same settings give byte-identical parquet files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medfm_hf import __version__
from medfm_hf.benchmark.features import config_name, perturbed_features
from medfm_hf.dataset_io import atomic_write_text, split_path
from medfm_hf.records import Record, mask_to_bbox, read_records_parquet, write_rows_parquet

logger = logging.getLogger(__name__)

STATE_DIR = ".medfm"


@dataclass
class BuildSettings:
    """Everything that determines a build's content (stored in ``.medfm/build.json``)."""

    sources: list[list] = field(default_factory=lambda: [["demo", None, {}]])  # [name, path, options]
    perturbations: list[str] | None = None  # None = every applicable perturbation
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    max_size: int = 512
    seed: int = 0
    modalities: list[str] | None = None

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        d["sources"] = [[n, os.path.abspath(p) if p else None, dict(sorted(o.items()))] for n, p, o in self.sources]
        return d


class BuildError(ValueError):
    """A build cannot start or continue; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------------
# clean records
# --------------------------------------------------------------------------------------------------------


def _resize_record(rec: Record, max_size: int) -> Record:
    import cv2

    h, w = rec.image.shape[:2]
    if max(h, w) <= max_size:
        return rec
    scale = max_size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = cv2.resize(rec.image, (nw, nh), interpolation=cv2.INTER_AREA)
    mask = None
    if rec.mask is not None:
        mask = cv2.resize(rec.mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(bool)
    tb = None
    if rec.target_bbox is not None:
        tb = [min(max(v * (nw / w if i % 2 == 0 else nh / h), 0.0), float(nw if i % 2 == 0 else nh))
              for i, v in enumerate(rec.target_bbox)]
    meta = dict(rec.meta, resized_from=[h, w])
    return dataclasses.replace(rec, image=img, mask=mask, bbox=None if mask is None else mask_to_bbox(mask),
                               target_bbox=tb, meta=meta)


def collect_clean_records(settings: BuildSettings, out: str) -> tuple[list[Record], list[str]]:
    """Load every source (with its bad-input report), resize to ``max_size``; returns records and reports."""
    from medfm_hf.sources import load_source

    records: list[Record] = []
    reports: list[str] = []
    seen: set[str] = set()
    for name, path, opts in settings.sources:
        opts = dict(opts)
        if name != "demo":
            # the split is drawn once and recorded next to the data (uploaded with it, kept by --overwrite)
            opts.setdefault("split_file", os.path.join(out, "splits", f"{name}.json"))
        recs, report = load_source(name, path, seed=settings.seed, **opts)
        if report.issues:
            reports.append(report.format())
        for rec in recs:
            if settings.modalities and rec.modality not in settings.modalities:
                continue
            if rec.image_id in seen:
                raise BuildError(f"duplicate image_id {rec.image_id!r} across sources; give each source a distinct name")
            seen.add(rec.image_id)
            records.append(_resize_record(rec, settings.max_size))
    if not records:
        raise BuildError("the selected sources and modalities gave no records")
    return records, reports


# --------------------------------------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------------------------------------


def plan_shards(records: Sequence[Record], settings: BuildSettings) -> list[tuple[str, str]]:
    """The (source, perturbation) pairs that have at least one applicable test image."""
    from medfm_hf.perturbations import get_perturbation, list_perturbations

    names = settings.perturbations or list_perturbations()
    perts = [get_perturbation(n) for n in names]  # raises for unknown names, listing valid ones
    shards = []
    sources = sorted({r.source for r in records if r.split == "test"})
    for p in perts:
        for s in sources:
            if any(r.source == s and r.split == "test" and p.applies_to(r.modality, r.image) for r in records):
                shards.append((s, p.name))
    return shards


def _marker(out: str, source: str, pert: str) -> str:
    return os.path.join(out, STATE_DIR, "shards", f"{source}__{pert}.json")


_WORKER_CACHE: dict[str, list[Record]] = {}


def _clean_test_records(out: str, source: str) -> list[Record]:
    key = f"{out}::{source}"
    if key not in _WORKER_CACHE:
        recs = read_records_parquet(split_path(out, "clean", "test"))
        _WORKER_CACHE[key] = [r for r in recs if r.source == source]
    return _WORKER_CACHE[key]


def _move_box(pert, rec: Record, strength: float, seed: int) -> list[float] | None:
    """Move a target box that is not the mask's box with the same geometric transform."""
    h, w = rec.image.shape[:2]
    x0, y0, x1, y1 = rec.target_bbox
    box_mask = np.zeros((h, w), bool)
    box_mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
    _, moved = pert.apply(rec.image, strength, np.random.default_rng(seed), mask=box_mask)
    b = mask_to_bbox(moved)
    return None if b is None else [float(v) for v in b]


def run_shard(out: str, source: str, pert_name: str, levels: Sequence[int], seed: int) -> dict:
    """Calibrate one (source, perturbation) shard and write its per-level files; returns its stats."""
    from medfm_hf.calibration import calibrate
    from medfm_hf.perturbations import get_perturbation
    from medfm_hf.perturbations.ct import ct_window

    t0 = time.perf_counter()
    pert = get_perturbation(pert_name)
    rows: dict[int, list[Record]] = {lv: [] for lv in levels}
    stats = []
    for rec in _clean_test_records(out, source):
        if not pert.applies_to(rec.modality, rec.image):
            continue
        data_range = rec.meta.get("data_range")
        results = calibrate(rec.image, pert_name, image_id=rec.image_id, seed=seed, levels=tuple(levels),
                            mask=rec.mask, data_range=data_range, fov=rec.field_of_view(),
                            window=ct_window(rec.meta) if rec.modality == "ct" else None)
        for res in results:
            target = rec.target_bbox
            if pert.geometric and target is not None:
                target = [float(v) for v in res.bbox] if rec.bbox is not None and list(map(float, rec.bbox)) == \
                    list(map(float, target)) and res.bbox is not None else _move_box(pert, rec, res.strength, res.seed)
            new = dataclasses.replace(
                rec, image=res.image, mask=res.mask, bbox=res.bbox, target_bbox=target,
                meta=dict(rec.meta),
            )
            new.meta["calibration"] = {"perturbation": pert_name, "level": res.level, "strength": res.strength,
                                       "ssim": res.ssim, "in_band": res.in_band, "seed": res.seed,
                                       "evaluations": res.evaluations, "ssim_frame": res.ssim_frame,
                                       "reason": res.reason,
                                       "target_visible_fraction": res.target_visible_fraction}
            rows[res.level].append(new)
            stats.append({"image_id": rec.image_id, "modality": rec.modality, "level": res.level,
                          "ssim": res.ssim, "in_band": res.in_band, "evaluations": res.evaluations,
                          "strength": res.strength, "ssim_frame": res.ssim_frame, "reason": res.reason,
                          "target_visible_fraction": res.target_visible_fraction})
    for lv, recs in rows.items():
        path = os.path.join(out, "data", config_name(pert_name, lv), f"test-{source}-00000-of-00001.parquet")
        _write_perturbed(recs, path)
    info = {"source": source, "perturbation": pert_name, "seconds": time.perf_counter() - t0, "cells": stats}
    atomic_write_text(_marker(out, source, pert_name), json.dumps(info, sort_keys=True))
    return info


def _write_perturbed(recs: list[Record], path: str) -> None:
    recs = sorted(recs, key=lambda r: r.image_id)
    feats = perturbed_features()
    rows = []
    for r in recs:
        row = r.to_row()
        cal = r.meta["calibration"]
        row["meta"] = json.dumps({k: v for k, v in r.meta.items() if k != "calibration"}, sort_keys=True)
        row.update({"perturbation": cal["perturbation"], "level": cal["level"], "strength": cal["strength"],
                    "ssim": cal["ssim"], "in_band": cal["in_band"], "seed": cal["seed"],
                    "evaluations": cal["evaluations"], "ssim_frame": cal["ssim_frame"],
                    "reason": cal["reason"], "target_visible_fraction": cal["target_visible_fraction"]})
        rows.append(row)
    write_rows_parquet(rows, path, feats)


def _shard_job(job: tuple) -> dict:
    out, source, pert, levels, seed = job
    return run_shard(out, source, pert, levels, seed)


# --------------------------------------------------------------------------------------------------------
# the whole build
# --------------------------------------------------------------------------------------------------------


def _check_settings(out: str, settings: BuildSettings, overwrite: bool) -> None:
    path = os.path.join(out, STATE_DIR, "build.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
        if old.get("settings") != settings.key():
            if not overwrite:
                diff = sorted(k for k in settings.key() if old.get("settings", {}).get(k) != settings.key()[k])
                raise BuildError(
                    f"{out} was built with other settings (differs in: {', '.join(diff)}); pass --overwrite to "
                    "replace it or choose another --out"
                )
            logger.info("--overwrite: removing the previous build in %s", out)
            for sub in ("data", STATE_DIR):
                shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    elif os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise BuildError(f"{out} exists and is not a medfm_hf build; pass --overwrite or choose another --out")
    elif os.path.isdir(out) and overwrite:
        for sub in ("data", STATE_DIR):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    atomic_write_text(path, json.dumps({"settings": settings.key(), "medfm_hf": __version__}, indent=2,
                                       sort_keys=True))


def build_benchmark(settings: BuildSettings, out: str, *, num_proc: int = 1, overwrite: bool = False,
                    progress: bool = True, write_card: bool = True) -> dict:
    """Build (or resume) the benchmark folder ``out``; returns a summary with the calibration report."""
    from tqdm.auto import tqdm

    from medfm_hf.dataset_io import write_clean_config

    bad_levels = [lv for lv in settings.levels if lv not in (1, 2, 3, 4, 5)]
    if bad_levels or not settings.levels:
        raise BuildError(f"levels must be in 1-5, got {settings.levels}")
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    _check_settings(out, settings, overwrite)
    records, reports = collect_clean_records(settings, out)
    if not any(r.split == "test" for r in records):
        raise BuildError("no test images among the selected records; perturbed configs are built from clean/test")
    shards = plan_shards(records, settings)
    # clean config: rewritten every time (deterministic), so a resumed build sees the same input
    write_clean_config(records, out)
    todo = [s for s in shards if not os.path.exists(_marker(out, *s))]
    logger.info("%d shards (%d already done)", len(shards), len(shards) - len(todo))
    jobs = [(out, s, p, list(settings.levels), settings.seed) for s, p in todo]
    bar = tqdm(total=len(jobs), desc="calibrating shards", unit="shard", disable=not progress)
    if num_proc > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(num_proc) as pool:
            for _ in pool.imap_unordered(_shard_job, jobs):
                bar.update()
    else:
        for job in jobs:
            _shard_job(job)
            bar.update()
    bar.close()
    infos = []
    for s, p in shards:
        with open(_marker(out, s, p), encoding="utf-8") as fh:
            infos.append(json.load(fh))
    from medfm_hf.benchmark.card import write_card as _write_card
    from medfm_hf.benchmark.report import calibration_report

    report = calibration_report(infos)
    report.to_csv(os.path.join(out, "calibration_report.csv"), index=False, float_format="%.6g")
    summary = {"records": len(records), "shards": len(shards), "resumed_shards": len(shards) - len(todo),
               "seconds": time.perf_counter() - t0, "source_reports": reports, "report": report}
    if write_card:
        _write_card(out, records, infos, settings)
    return summary
