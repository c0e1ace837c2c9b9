"""Build the benchmark dataset folder: ``clean`` + one ``<perturbation>_l<level>`` config each.

Work is sharded by (source, perturbation). Each shard calibrates every clean **test** image of that source
whose modality the perturbation applies to, then writes one parquet file per level (paths from
:mod:`medfm_hf.benchmark.layout`), atomically, followed by a marker in ``.medfm/shards/``.

Runs are keyed by what they read:

* every input file of a source (path, size, mtime, SHA-256), every clean record (a content hash) and the
  settings are recorded in ``.medfm/build.json``; each shard marker carries the fingerprint of the records it
  read. A rerun resumes the shards whose fingerprint is unchanged and rebuilds exactly the others (or, with
  ``refuse_changed``, refuses and names the changed input files); it never mixes old and new.
* ``manifest.json`` lists every written file with its size and SHA-256 (``medfm-robust verify``).
* ``overwrite`` deletes only files that a previous build listed, never unknown files, and a folder that
  holds one of the sources is refused. Everything is validated before anything is written, and an
  unfinished build never blocks its corrected rerun.
* an image that cannot be perturbed (too small, constant) is skipped and listed in ``bad_inputs.json``.
* under ``accelerate launch`` (any number of processes and nodes on a shared filesystem) rank 0 prepares,
  the shards are dealt round-robin to the ranks, and rank 0 finishes: the output is byte-identical to one
  process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfm_hf import MODALITIES, __version__
from medfm_hf.benchmark import layout
from medfm_hf.benchmark.features import PERTURBED_COLUMNS, perturbed_features
from medfm_hf.benchmark.layout import BenchmarkError
from medfm_hf.io import atomic_write_text, folder_problem, remove_stale_temporaries, sha256_file
from medfm_hf.records import (
    Record,
    mask_to_bbox,
    read_records_parquet,
    write_records_parquet,
    write_rows_parquet,
)

logger = logging.getLogger(__name__)

STATE_DIR = layout.STATE_DIR
MAX_SIZE_LIMIT = 8192  # --max-size above this is refused (an 8192^2 RGB uint16 image is 400 MB)


@dataclass
class BuildSettings:
    """Everything that determines a build's content (stored in ``.medfm/build.json``)."""

    sources: list[list] = field(default_factory=lambda: [["demo", None, {}]])  # [name, path, options]
    perturbations: list[str] | None = None  # None = every applicable perturbation
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # also "1-5", "1,3" (parsed when validated)
    max_size: int = 512
    seed: int = 0
    modalities: list[str] | None = None
    #: ``[centre, width]`` in HU for CT records that carry no window of their own (8-bit sources); None: the
    #: documented default (:data:`medfm_hf.perturbations.ct.DEFAULT_WINDOW`, soft tissue 40/400).
    ct_window: list[float] | None = None

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        if d["ct_window"] is None:
            d.pop("ct_window")  # builds made before the option existed keep their settings key
        d["sources"] = [[n, os.path.abspath(p) if p else None, dict(sorted(o.items()))] for n, p, o in self.sources]
        return d


class BuildError(BenchmarkError):
    """A build cannot start or continue; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------------
# validation: everything that can be wrong with the arguments, before anything is read or written
# --------------------------------------------------------------------------------------------------------


def check_output_folder(out: str, flag: str = "--out") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written."""
    problem = folder_problem(out)
    if problem:
        raise BuildError(f"{flag} {problem}")


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def validate_settings(settings: BuildSettings, out: str, num_proc: int = 1) -> None:
    """Raise :class:`BuildError` (one line) for any bad setting; reads and writes nothing."""
    from medfm_hf.perturbations import PerturbationError, get_perturbation

    try:
        settings.levels = layout.parse_levels(settings.levels)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    if settings.perturbations is not None:
        if not settings.perturbations:
            raise BuildError("no perturbations given; pass 'all' or comma-separated names")
        for name in settings.perturbations:
            try:
                get_perturbation(name)
            except PerturbationError as exc:
                raise BuildError(str(exc)) from None
    if settings.modalities is not None:
        bad = [m for m in settings.modalities if m not in MODALITIES]
        if bad or not settings.modalities:
            raise BuildError(f"unknown modalities {bad}; expected some of {', '.join(MODALITIES)}")
    if not isinstance(settings.max_size, int) or not 32 <= settings.max_size <= MAX_SIZE_LIMIT:
        raise BuildError(f"--max-size must be an integer in 32-{MAX_SIZE_LIMIT}, got {settings.max_size}")
    if not isinstance(num_proc, int) or num_proc < 1:
        raise BuildError("--num-proc must be >= 1")
    if settings.ct_window is not None:
        win = settings.ct_window
        if len(win) != 2 or not all(np.isfinite(float(v)) for v in win) or float(win[1]) <= 0:
            raise BuildError(f"--ct-window must be CENTRE,WIDTH in HU with WIDTH > 0 (e.g. 40,400), got {win}")
        settings.ct_window = [float(win[0]), float(win[1])]
    _validate_sources(settings, out)
    check_output_folder(out)


def _validate_sources(settings: BuildSettings, out: str) -> None:
    from medfm_hf.sources import get_source

    if not settings.sources:
        raise BuildError("no sources given; e.g. --sources demo or --sources folder=PATH:dermoscopy")
    names = []
    for name, src_path, _opts in settings.sources:
        try:
            spec = get_source(name)
        except KeyError as exc:
            raise BuildError(exc.args[0] if exc.args else str(exc)) from None
        if name in names:
            raise BuildError(f"source {name!r} is given twice; give each source once")
        names.append(name)
        if spec.needs_path and not src_path:
            raise BuildError(f"source {name!r} needs a path: --sources {name}=PATH (expected layout: {spec.layout})")
        if src_path:
            if not os.path.exists(src_path):
                raise BuildError(f"{name} source: {src_path} does not exist")
            if _inside(src_path, out):
                raise BuildError(f"the output folder {out} contains the {name} source {src_path}; writing (or "
                                 "--overwrite) there could destroy it. Choose an --out outside the source")


# --------------------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------------------


def input_files(src_path: str) -> dict[str, dict[str, Any]]:
    """Every file under a source path: relative path -> size, mtime (ns) and SHA-256."""
    files = {}
    if os.path.isfile(src_path):
        walk = [(os.path.dirname(src_path), [], [os.path.basename(src_path)])]
        root = os.path.dirname(src_path)
    else:
        walk = os.walk(src_path)
        root = src_path
    for dirpath, dirnames, filenames in walk:
        dirnames.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            try:
                st = os.stat(full)
                digest = sha256_file(full)
            except OSError as exc:  # unreadable: the source adapter reports it; record why here
                files[os.path.relpath(full, root).replace(os.sep, "/")] = {"error": exc.strerror or str(exc)}
                continue
            files[os.path.relpath(full, root).replace(os.sep, "/")] = {
                "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return files


def record_hash(rec: Record) -> str:
    """A content hash of a clean record: pixels, mask and every field (what its perturbed rows depend on)."""
    h = hashlib.sha256()
    for arr in (rec.image, rec.mask):
        if arr is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    fields = {k: getattr(rec, k) for k in ("image_id", "source", "modality", "task", "split", "bbox", "question",
                                           "options", "answer", "caption", "target_bbox", "meta")}
    h.update(layout.canonical_json(fields).encode())
    return h.hexdigest()[:16]


def _changed_inputs(old: dict, new: dict) -> list[str]:
    """``source: file (changed|added|removed)`` lines between two input tables."""
    lines = []
    for src in sorted(set(old) | set(new)):
        a, b = old.get(src, {}), new.get(src, {})
        for f in sorted(set(a) | set(b)):
            if f not in a:
                lines.append(f"{src}: {f} (added)")
            elif f not in b:
                lines.append(f"{src}: {f} (removed)")
            elif a[f].get("sha256") != b[f].get("sha256"):
                lines.append(f"{src}: {f} (changed)")
    return lines


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


def unusable_reason(rec: Record) -> str | None:
    """Why a clean image cannot be benchmarked (too small, constant, bad dtype), else ``None``."""
    from medfm_hf.perturbations import PerturbationError
    from medfm_hf.perturbations.registry import check_image

    try:
        check_image(rec.image, "image")
    except PerturbationError as exc:
        return str(exc).removeprefix("image: ")
    flat = rec.image.reshape(-1, rec.image.shape[2]) if rec.image.ndim == 3 else rec.image.reshape(-1)
    if (flat == flat[0]).all():
        return "constant image (every pixel has the same value): no structure for the SSIM bands to measure"
    return None


def _where(rec: Record) -> str:
    return str(rec.meta.get("image_file") or rec.meta.get("file") or rec.image_id)


def collect_clean_records(settings: BuildSettings, out: str) -> tuple[list[Record], list[str], list[dict]]:
    """Load every source, resize to ``max_size`` and drop unusable images.

    Returns the records, the printable source reports and the bad-input rows (``source``, ``path``,
    ``action``, ``reason``) of everything skipped or flagged.
    """
    from medfm_hf.sources import load_source

    records: list[Record] = []
    reports: list[str] = []
    bad: list[dict] = []
    seen: set[str] = set()
    for name, src_path, opts in settings.sources:
        opts = dict(opts)
        if name != "demo":
            # the split is drawn once and recorded next to the data (uploaded with it)
            opts.setdefault("split_file", layout.path(out, layout.split_file(name)))
        recs, report = load_source(name, src_path, seed=settings.seed, **opts)
        for issue in report.issues:
            bad.append({"source": name, "path": issue.item, "action": issue.action, "reason": issue.reason})
        for rec in recs:
            if settings.modalities and rec.modality not in settings.modalities:
                continue
            if rec.image_id in seen:
                raise BuildError(f"duplicate image_id {rec.image_id!r} across sources; give each source a distinct name")
            seen.add(rec.image_id)
            why = unusable_reason(rec)
            if why is not None:
                report.skip(_where(rec), why)
                bad.append({"source": name, "path": _where(rec), "action": "skipped", "reason": why})
                continue
            if rec.modality == "ct" and settings.ct_window and not isinstance(rec.meta.get("window"), dict):
                centre, width = settings.ct_window
                rec.meta["window"] = {"center": centre, "width": width, "unit": "HU", "from": "--ct-window"}
            records.append(_resize_record(rec, settings.max_size))
        if report.issues:
            reports.append(report.format())
    if not records:
        raise BuildError("the selected sources and modalities gave no usable records"
                         + (f" ({len(bad)} inputs skipped; see the report above)" if bad else ""))
    return records, reports, bad


def write_clean_config(records: Sequence[Record], out: str) -> list[str]:
    """Write the ``clean`` config (one file per split, sorted by image id); returns the relative paths."""
    from medfm_hf.records import SPLITS

    written = []
    for split in SPLITS:
        recs = sorted((r for r in records if r.split == split), key=lambda r: r.image_id)
        if not recs:
            continue
        for r in recs:
            r.validate()
        rel = layout.clean_file(split)
        write_records_parquet(recs, layout.path(out, rel))
        written.append(rel)
    return written


# --------------------------------------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------------------------------------


def plan_shards(records: Sequence[Record], settings: BuildSettings) -> list[tuple[str, str]]:
    """The (source, perturbation) pairs that have at least one applicable test image."""
    from medfm_hf.perturbations import get_perturbation, list_perturbations

    names = settings.perturbations or list_perturbations()
    perts = [get_perturbation(n) for n in names]
    shards = []
    sources = sorted({r.source for r in records if r.split == "test"})
    for p in perts:
        for s in sources:
            if any(r.source == s and r.split == "test" and p.applies_to(r.modality, r.image) for r in records):
                shards.append((s, p.name))
    return shards


def shard_fingerprint(records: Sequence[Record], hashes: dict[str, str], source: str, pert_name: str,
                      settings: BuildSettings) -> str:
    """What a shard's output depends on: its input records' hashes, levels, seed, perturbation, version."""
    from medfm_hf.perturbations import get_perturbation

    pert = get_perturbation(pert_name)
    ids = sorted(r.image_id for r in records
                 if r.source == source and r.split == "test" and pert.applies_to(r.modality, r.image))
    return layout.fingerprint({"records": [[i, hashes[i]] for i in ids], "levels": list(settings.levels),
                               "seed": settings.seed, "perturbation": pert_name, "medfm_hf": __version__})


_WORKER_CACHE: dict[tuple[str, str, str], list[Record]] = {}


def _clean_test_records(out: str, source: str, clean_sha: str) -> list[Record]:
    key = (os.path.abspath(out), source, clean_sha)
    if key not in _WORKER_CACHE:
        recs = read_records_parquet(layout.path(out, layout.clean_file("test")))
        _WORKER_CACHE.clear()
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


def perturbed_row(rec: Record, res, pert) -> dict[str, Any]:
    """One perturbed row: the clean row's fields with the perturbed image/mask, plus the calibration columns
    (:data:`~medfm_hf.benchmark.features.PERTURBED_COLUMNS`)."""
    target = rec.target_bbox
    if pert.geometric and target is not None:
        same = rec.bbox is not None and list(map(float, rec.bbox)) == list(map(float, target))
        target = [float(v) for v in res.bbox] if same and res.bbox is not None else \
            _move_box(pert, rec, res.strength, res.seed)
    new = dataclasses.replace(rec, image=res.image, mask=res.mask, bbox=res.bbox, target_bbox=target,
                              meta=dict(rec.meta))
    row = new.to_row()
    calibration = {"perturbation": pert.name, "level": res.level, "strength": res.strength, "ssim": res.ssim,
                   "in_band": res.in_band, "seed": res.seed, "evaluations": res.evaluations,
                   "ssim_frame": res.ssim_frame, "reason": res.reason,
                   "target_visible_fraction": res.target_visible_fraction}
    row.update({k: calibration[k] for k in PERTURBED_COLUMNS})
    return row


def run_shard(out: str, source: str, pert_name: str, levels: Sequence[int], seed: int, fingerprint: str = "",
              clean_sha: str = "") -> dict:
    """Calibrate one (source, perturbation) shard and write its per-level files; returns its marker."""
    from medfm_hf.calibration import calibrate
    from medfm_hf.perturbations import PerturbationError, get_perturbation
    from medfm_hf.perturbations.ct import ct_window

    t0 = time.perf_counter()
    pert = get_perturbation(pert_name)
    rows: dict[int, list[dict]] = {lv: [] for lv in levels}
    stats, skipped = [], []
    for rec in _clean_test_records(out, source, clean_sha):
        if not pert.applies_to(rec.modality, rec.image):
            continue
        try:
            results = calibrate(rec.image, pert_name, image_id=rec.image_id, seed=seed, levels=tuple(levels),
                                mask=rec.mask, data_range=rec.meta.get("data_range"), fov=rec.field_of_view(),
                                window=ct_window(rec.meta) if rec.modality == "ct" else None)
        except PerturbationError as exc:  # one bad image never stops the shard
            skipped.append({"image_id": rec.image_id, "path": _where(rec), "reason": str(exc)})
            logger.warning("%s: skipped %s: %s", pert_name, rec.image_id, exc)
            continue
        for res in results:
            rows[res.level].append(perturbed_row(rec, res, pert))
            stats.append({"image_id": rec.image_id, "modality": rec.modality, "level": res.level,
                          "ssim": res.ssim, "in_band": res.in_band, "evaluations": res.evaluations,
                          "strength": res.strength, "ssim_frame": res.ssim_frame, "reason": res.reason,
                          "target_visible_fraction": res.target_visible_fraction})
    files = {}
    feats = perturbed_features()
    for lv, lv_rows in rows.items():
        rel = layout.perturbed_file(pert_name, lv, source)
        full = layout.path(out, rel)
        write_rows_parquet(sorted(lv_rows, key=lambda r: r["image_id"]), full, feats)
        files[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    from medfm_hf.env import launched_rank

    info = {"source": source, "perturbation": pert_name, "seconds": time.perf_counter() - t0, "cells": stats,
            "skipped": skipped, "fingerprint": fingerprint, "files": files, "rank": launched_rank()[0]}
    atomic_write_text(layout.path(out, layout.marker_file(source, pert_name)), json.dumps(info, sort_keys=True))
    return info


def _shard_job(job: tuple) -> dict:
    return run_shard(*job)


def _read_marker(out: str, source: str, pert: str) -> dict | None:
    try:
        return layout.read_json(layout.path(out, layout.marker_file(source, pert)))
    except BenchmarkError:
        return None  # a corrupt marker is a shard to redo


# --------------------------------------------------------------------------------------------------------
# previous builds: resume, replace, clean up
# --------------------------------------------------------------------------------------------------------


def _listed_files(out: str, state: dict) -> set[str]:
    """Every file a previous build says it wrote (state, markers), relative paths."""
    files = set(state.get("files", {}))
    shards_dir = layout.path(out, layout.SHARDS_DIR)
    if os.path.isdir(shards_dir):
        for f in sorted(os.listdir(shards_dir)):
            if f.endswith(".json"):
                rel = f"{layout.SHARDS_DIR}/{f}"
                files.add(rel)
                try:
                    marker = layout.read_json(layout.path(out, rel)) or {}
                except BenchmarkError:
                    continue
                files.update(marker.get("files", {}))
    files.update({layout.BUILD_STATE, layout.MANIFEST})
    return files


def _files_intact(out: str, files: dict) -> bool:
    """Whether every listed file exists with its recorded size and SHA-256 (a corrupt shard is redone)."""
    for rel, info in files.items():
        full = layout.path(out, rel)
        if not os.path.isfile(full) or os.path.getsize(full) != info.get("size") or sha256_file(full) != info.get(
                "sha256"):
            logger.warning("%s is missing or differs from its marker: its shard is rebuilt", rel)
            return False
    return True


def _remove_files(out: str, rels: set[str]) -> int:
    """Delete the listed files (only those), then the folders they leave empty; returns the count."""
    n = 0
    dirs = set()
    for rel in sorted(rels):
        full = layout.path(out, rel)
        if os.path.isfile(full):
            os.remove(full)
            n += 1
        d = os.path.dirname(rel)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    for d in sorted(dirs, key=lambda s: -s.count("/")):
        full = layout.path(out, d)
        if os.path.isdir(full) and not os.listdir(full):
            os.rmdir(full)
    return n


def _reset_changed_splits(out: str, settings: BuildSettings) -> None:
    """Drop a recorded split whose ``fractions=`` differs from the requested one (it is drawn again)."""
    from medfm_hf.sources._common import parse_fractions, read_split_file, write_split_file

    for name, _p, opts in settings.sources:
        if "fractions" not in opts:
            continue
        file = layout.path(out, layout.split_file(name))
        if not os.path.exists(file):
            continue
        data = read_split_file(file)
        entry = data["sources"].get(name)
        wanted = list(parse_fractions(opts["fractions"]))
        if entry is not None and [float(v) for v in entry.get("fractions", [])] != wanted:
            logger.info("%s: fractions changed to %s: the recorded split in %s is drawn again", name, wanted, file)
            data["sources"].pop(name)
            write_split_file(file, data)


def _check_previous(out: str, settings: BuildSettings, overwrite: bool) -> dict | None:
    """Decide what happens to what is already in ``out``; returns the previous state to resume from."""
    state = layout.read_build_state(out)
    if state is None:
        if os.path.isdir(out) and os.listdir(out) and layout.read_manifest(out) is None:
            raise BuildError(f"{out} is not empty and holds no medfm_hf build (no {layout.BUILD_STATE}); nothing "
                             "was changed. --overwrite only replaces a previous build: choose an empty or new --out")
        return None
    if state.get("format") != layout.FORMAT_VERSION:
        raise BuildError(f"{out} was built by an older medfm_hf (format {state.get('format', 1)}); build into a new "
                         "--out (nothing was changed)")
    if state.get("settings") == settings.key():
        return state
    diff = sorted(k for k in settings.key() if state.get("settings", {}).get(k) != settings.key()[k])
    if state.get("complete") and not overwrite:
        raise BuildError(f"{out} was built with other settings (differs in: {', '.join(diff)}); pass --overwrite to "
                         "replace it or choose another --out")
    why = "--overwrite" if state.get("complete") else "the previous build there did not finish"
    n = _remove_files(out, _listed_files(out, state))
    logger.warning("%s: replaced the previous build (differs in: %s; %s): removed the %d files it had written",
                   out, ", ".join(diff), why, n)
    return None


# --------------------------------------------------------------------------------------------------------
# distributed helpers (accelerate launch); no-ops in one process
# --------------------------------------------------------------------------------------------------------


class _Ranks:
    """Rank, world size, broadcast and gather across ``accelerate launch`` processes."""

    def __init__(self) -> None:
        from medfm_hf.env import launched_rank

        self.rank, self.world = launched_rank()
        self._state = None
        if self.world > 1:
            import torch
            from accelerate import PartialState

            self._state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = self._state.process_index, self._state.num_processes

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group (a rank exiting with it alive can abort in the collective's threads)."""
        if self._state is None:
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        self._state = None

    def broadcast(self, obj):
        if self._state is None:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather(self, obj) -> list:
        if self._state is None:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])


# --------------------------------------------------------------------------------------------------------
# the whole build
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    records: list[Record]
    reports: list[str]
    bad: list[dict]
    shards: list[tuple[str, str]]
    fingerprints: dict[str, str]
    todo: list[tuple[str, str]]
    rebuilt: list[tuple[str, str]]
    clean_sha: str
    state: dict


def _shards_to_do(out: str, shards: list[tuple[str, str]], fps: dict[str, str]) -> tuple[list, list]:
    """``(todo, rebuilt)``: shards without an intact marker of the same fingerprint, and those of them that had
    a marker (their inputs changed, or their files were damaged)."""
    todo, rebuilt = [], []
    for s, p in shards:
        marker = _read_marker(out, s, p)
        ok = marker is not None and marker.get("fingerprint") == fps[f"{s}__{p}"] and _files_intact(
            out, marker.get("files", {}))
        if not ok:
            todo.append((s, p))
            if marker is not None:
                rebuilt.append((s, p))
    return todo, rebuilt


def _files_of_dropped_shards(out: str, keep: set[str]) -> set[str]:
    """Markers (and their files) of shards that are no longer part of the build."""
    stale: set[str] = set()
    shards_dir = layout.path(out, layout.SHARDS_DIR)
    if os.path.isdir(shards_dir):
        for f in os.listdir(shards_dir):
            if f.endswith(".json") and f[:-5] not in keep:
                marker = _read_marker_file(os.path.join(shards_dir, f))
                stale.update(marker.get("files", {}))
                stale.add(f"{layout.SHARDS_DIR}/{f}")
    return stale


def _read_marker_file(file: str) -> dict:
    try:
        return layout.read_json(file) or {}
    except BenchmarkError:
        return {}


def _prepare(settings: BuildSettings, out: str, overwrite: bool, refuse_changed: bool) -> _Prepared:
    """Rank 0, before the shards: settle the previous build, load and fingerprint the inputs, write the
    clean config and the (incomplete) state, and decide which shards to run."""
    os.makedirs(out, exist_ok=True)
    previous = _check_previous(out, settings, overwrite)
    if previous is None:
        # claim the folder first: whatever fails from here on leaves a state that the rerun can replace
        atomic_write_text(layout.path(out, layout.BUILD_STATE), json.dumps(
            {"format": layout.FORMAT_VERSION, "medfm_hf": __version__, "settings": settings.key(),
             "complete": False, "files": {}}, indent=1, sort_keys=True))
    if overwrite or previous is None:
        _reset_changed_splits(out, settings)
    for sub in (layout.DATA_DIR, layout.STATE_DIR, layout.SPLITS_DIR):
        if os.path.isdir(layout.path(out, sub)):
            remove_stale_temporaries(layout.path(out, sub))
    inputs = {name: input_files(p) for name, p, _o in settings.sources if p}
    records, reports, bad = collect_clean_records(settings, out)
    if not any(r.split == "test" for r in records):
        raise BuildError("no test images among the selected records; perturbed configs are built from clean/test"
                         " (check the fractions= option or the split files in " + layout.path(out, "splits") + ")")
    hashes = {r.image_id: record_hash(r) for r in records}
    shards = plan_shards(records, settings)
    fps = {f"{s}__{p}": shard_fingerprint(records, hashes, s, p, settings) for s, p in shards}
    todo, rebuilt = _shards_to_do(out, shards, fps)
    if rebuilt:
        changed = _changed_inputs((previous or {}).get("inputs", {}), inputs)
        if refuse_changed:
            changed = changed or ["(the records read changed)"]
            raise BuildError(f"{len(rebuilt)} shards read inputs that changed since they were built: "
                             f"{'; '.join(changed[:10])}{' ...' if len(changed) > 10 else ''}; rerun without "
                             "--refuse-changed to rebuild exactly those shards")
        logger.warning("inputs changed (%s): rebuilding %d shards: %s", "; ".join(changed[:10]) or "records differ",
                       len(rebuilt), ", ".join(f"{s}/{p}" for s, p in rebuilt))
    stale = _files_of_dropped_shards(out, {f"{s}__{p}" for s, p in shards})
    clean_files = write_clean_config(records, out)
    for rel in (previous or {}).get("files", {}):
        if rel.startswith(f"{layout.DATA_DIR}/{layout.CLEAN}/") and rel not in clean_files:
            stale.add(rel)
    for s, p in rebuilt:
        os.remove(layout.path(out, layout.marker_file(s, p)))
    if stale:
        logger.info("removing %d files of shards that are no longer part of the build", len(stale))
        _remove_files(out, stale)
    files = {rel: {"size": os.path.getsize(layout.path(out, rel)), "sha256": sha256_file(layout.path(out, rel))}
             for rel in clean_files}
    state = {"format": layout.FORMAT_VERSION, "medfm_hf": __version__, "settings": settings.key(),
             "complete": False, "inputs": inputs, "records": hashes, "shards": fps, "files": files,
             "rebuilt": [f"{s}__{p}" for s, p in rebuilt]}
    atomic_write_text(layout.path(out, layout.BUILD_STATE), json.dumps(state, indent=1, sort_keys=True))
    return _Prepared(records, reports, bad, shards, fps, todo, rebuilt, files[layout.clean_file("test")]["sha256"],
                     state)


def _run_jobs(jobs: list[tuple], num_proc: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    procs = max(1, min(num_proc, len(jobs), os.cpu_count() or 1))
    if procs < num_proc:
        logger.info("--num-proc %d capped to %d (%d shards for this process, %d CPUs)", num_proc, procs, len(jobs),
                    os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc="calibrating shards", unit="shard", disable=not progress)
    if procs > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(procs) as pool:
            for _ in pool.imap_unordered(_shard_job, jobs):
                bar.update()
    else:
        for job in jobs:
            _shard_job(job)
            bar.update()
    bar.close()


def _finish(out: str, settings: BuildSettings, prep: _Prepared, write_card: bool) -> tuple[list[dict], Any]:
    from medfm_hf.benchmark.report import calibration_report

    infos = []
    for s, p in prep.shards:
        marker = _read_marker(out, s, p)
        if marker is None or marker.get("fingerprint") != prep.fingerprints[f"{s}__{p}"]:
            raise BuildError(f"shard {s}/{p} did not finish; rerun the same command to resume")
        infos.append(marker)
    files = dict(prep.state["files"])
    bad = list(prep.bad)
    for info in infos:
        files.update(info["files"])
        for sk in info.get("skipped", []):
            bad.append({"source": info["source"], "path": sk["path"], "action": "skipped",
                        "reason": f"{info['perturbation']}: {sk['reason']}"})
    report = calibration_report(infos)
    report_path = layout.path(out, layout.REPORT)
    atomic_write_text(report_path, report.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(layout.path(out, layout.BAD_INPUTS), json.dumps(bad, indent=1) + "\n")
    written = [layout.REPORT, layout.BAD_INPUTS]
    if write_card:
        from medfm_hf.benchmark.card import write_card as _write_card

        written += _write_card(out, prep.records, infos, settings)
    for name, _p, _o in settings.sources:
        if os.path.exists(layout.path(out, layout.split_file(name))):
            written.append(layout.split_file(name))
    for rel in written:
        full = layout.path(out, rel)
        files[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    public_settings = settings.key()
    public_settings["sources"] = [[n, o] for n, _p, o in public_settings["sources"]]
    manifest = {"format": layout.FORMAT_VERSION, "medfm_hf": __version__, "settings": public_settings,
                "complete": True, "configs": sorted({os.path.dirname(f).split("/")[-1] for f in files
                                                     if f.startswith(layout.DATA_DIR + "/")}),
                "records": len(prep.records), "data_fingerprint": layout.data_fingerprint(files), "files": files}
    atomic_write_text(layout.path(out, layout.MANIFEST), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    state = dict(prep.state, complete=True, files=files, data_fingerprint=manifest["data_fingerprint"])
    atomic_write_text(layout.path(out, layout.BUILD_STATE), json.dumps(state, indent=1, sort_keys=True))
    return infos, report


def build_benchmark(settings: BuildSettings, out: str, *, num_proc: int = 1, overwrite: bool = False,
                    progress: bool = True, write_card: bool = True, refuse_changed: bool = False) -> dict:
    """Build (or resume) the benchmark folder ``out``; returns a summary with the calibration report.

    Under ``accelerate launch`` every process calls this with the same arguments: rank 0 loads the sources
    and writes the clean config, the shards are dealt to the ranks, and rank 0 writes the report, card and
    manifest (other ranks return a summary without the report).

    Raises
    ------
    BuildError
        Bad settings (before anything is written), an output folder that is not a previous build, other
        settings without ``overwrite``, changed inputs with ``refuse_changed``.
    """
    t0 = time.perf_counter()
    validate_settings(settings, out, num_proc)
    ranks = _Ranks()

    def build() -> dict:
        prep: _Prepared | None = None
        error = None
        if ranks.main:
            try:
                prep = _prepare(settings, out, overwrite, refuse_changed)
            except Exception as exc:
                if ranks.world == 1:
                    raise
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
                ranks.broadcast({"error": error})
                raise
        plan = ranks.broadcast(None if prep is None else {"todo": prep.todo, "clean_sha": prep.clean_sha,
                                                          "fps": prep.fingerprints})
        if plan is not None and "error" in plan:
            raise BuildError(plan["error"])
        mine = plan["todo"][ranks.rank :: ranks.world]
        if ranks.main:
            logger.info("%d shards (%d already done, %d rebuilt after an input change)%s", len(prep.shards),
                        len(prep.shards) - len(prep.todo), len(prep.rebuilt),
                        f"; {ranks.world} ranks" if ranks.world > 1 else "")
        jobs = [(out, s, p, list(settings.levels), settings.seed, plan["fps"][f"{s}__{p}"], plan["clean_sha"])
                for s, p in mine]
        failure = None
        try:
            _run_jobs(jobs, num_proc, progress and ranks.main)
        except Exception as exc:
            if ranks.world == 1:
                raise
            failure = f"rank {ranks.rank}: {type(exc).__name__}: {exc}"
        failures = [f for f in ranks.gather(failure) if f]
        if failures:
            if failure:
                raise BuildError(failure)
            raise BuildError(f"another process failed ({failures[0]}); rerun the same command to resume")
        if not ranks.main:
            ranks.gather(None)  # wait for rank 0 to finish the manifest
            return {"records": None, "shards": len(plan["todo"]), "resumed_shards": None, "rank": ranks.rank,
                    "seconds": time.perf_counter() - t0, "source_reports": [], "report": None, "rebuilt": []}
        try:
            infos, report = _finish(out, settings, prep, write_card)
        finally:
            ranks.gather(None)
        return {"records": len(prep.records), "shards": len(prep.shards),
                "resumed_shards": len(prep.shards) - len(prep.todo), "rebuilt": [f"{s}/{p}" for s, p in prep.rebuilt],
                "built": [f"{s}/{p}" for s, p in prep.todo], "seconds": time.perf_counter() - t0,
                "source_reports": prep.reports, "bad_inputs": prep.bad, "report": report,
                "skipped": [sk for i in infos for sk in i.get("skipped", [])]}

    try:
        return build()
    finally:
        ranks.close()  # every rank leaves the process group before the interpreter exits
