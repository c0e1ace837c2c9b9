"""CT volumes + label volumes in NIfTI, sliced to 2-D axial images: ``--sources ct_nifti=PATH``.

Expected layout (either; ``PATH`` may be the task folder or its parent)::

    MSD:     PATH/Task03_Liver/imagesTr/liver_0.nii.gz + PATH/Task03_Liver/labelsTr/liver_0.nii.gz
             (imagesTs/ has no labels and is not used; dataset.json "labels" names the label values)
    FLARE22: PATH/images/FLARE22_Tr_0001_0000.nii.gz + PATH/labels/FLARE22_Tr_0001.nii.gz
             (the nnU-Net channel suffix ``_0000`` is dropped when pairing)

Each volume is reoriented to the closest canonical (RAS+) orientation with nibabel and cut into
axial slices shown radiologically (patient's right on the image's left, anterior at the top). Only
slices containing the target ``label`` (default 1; e.g. MSD liver: 1 liver, 2 tumour; FLARE22: 1
liver, 2 right kidney, 3 spleen, 4 pancreas, ...) are kept; the mask is ``label volume == label``.

Intensities (HU, after the file's scale/intercept) are windowed to 8 bit with a **stated window**
recorded in ``meta["window"]``: ``window=abdomen`` (level 40, width 400; the default), ``liver``
(60/150), ``lung`` (-600/1500), ``bone`` (400/1800), ``brain`` (40/80), ``mediastinum`` (50/350) or
``window=LEVEL/WIDTH``. Record ids are ``ct_nifti/<case>_z<slice>``.

Splits: no official labelled test set exists (MSD ``imagesTs`` is unlabelled), so a seeded draw per
**volume** (all slices of a case go to the same split) is recorded in ``split_file`` and reused.

Licence: MSD is CC BY-SA 4.0 (Antonelli et al., Nat. Commun. 13:4128, 2022;
http://medicaldecathlon.com/); FLARE22 follows its challenge terms (research use;
https://flare22.grand-challenge.org/). The adapter itself reads any such NIfTI pair.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    as_int,
    parse_fractions,
    progress,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "MSD: CC BY-SA 4.0; FLARE22: challenge terms (research use)"
WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "mediastinum": (50.0, 350.0),
}
_DIR_PAIRS = (("imagesTr", "labelsTr"), ("images", "labels"))


def parse_window(value: str | tuple[float, float] | None) -> tuple[str, float, float]:
    """``(name, level, width)`` from a preset name or ``"LEVEL/WIDTH"``."""
    if value is None:
        value = "abdomen"
    if isinstance(value, tuple):
        level, width = value
        name = "custom"
    elif value.lower() in WINDOWS:
        name = value.lower()
        level, width = WINDOWS[name]
    else:
        try:
            level_s, width_s = re.split(r"[/,]", value)
            level, width, name = float(level_s), float(width_s), "custom"
        except ValueError:
            raise ValueError(f"ct_nifti: window={value!r} must be one of {sorted(WINDOWS)} or LEVEL/WIDTH, "
                             "e.g. 40/400") from None
    if width <= 0:
        raise ValueError(f"ct_nifti: window width must be positive, got {width}")
    return name, float(level), float(width)


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``[level - width/2, level + width/2]`` linearly to 0..255 (clipped, rounded) as uint8."""
    lo = level - width / 2.0
    scaled = (np.asarray(hu, np.float64) - lo) / width * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def case_name(path: Path) -> str:
    """Case id of a NIfTI file: the name without ``.nii``/``.nii.gz`` and without an nnU-Net ``_0000``."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return re.sub(r"_0000$", "", name)


def find_pairs(root: Path) -> list[tuple[Path, Path, Path]]:
    """``[(task folder, images folder, labels folder)]`` found at ``root`` or one level below."""
    found = []
    for base in [root, *sorted(d for d in root.iterdir() if d.is_dir())]:
        for img_name, lab_name in _DIR_PAIRS:
            if (base / img_name).is_dir() and (base / lab_name).is_dir():
                found.append((base, base / img_name, base / lab_name))
                break
    return found


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
                  and not p.name.startswith("."))


def _label_names(task: Path) -> dict[str, str]:
    p = task / "dataset.json"
    try:
        return {str(k): str(v) for k, v in json.loads(p.read_text(encoding="utf-8")).get("labels", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def radiological(slice_ras: np.ndarray) -> np.ndarray:
    """An axial slice indexed ``[x, y]`` in RAS+ -> image rows anterior-to-posterior, columns patient
    right-to-left (the radiological view)."""
    return np.ascontiguousarray(slice_ras.T[::-1, ::-1])


@register_source(
    "ct_nifti",
    layout="PATH/[Task*/]imagesTr/<case>.nii.gz + labelsTr/<case>.nii.gz (MSD)  or  PATH/images/<case>_0000.nii.gz "
    "+ PATH/labels/<case>.nii.gz (FLARE22); options label, window",
    licence=LICENCE,
    reference="http://medicaldecathlon.com/ ; https://flare22.grand-challenge.org/",
)
def load_ct_nifti(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    label: int | str = 1,
    window: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """CT NIfTI volumes with label volumes, sliced axially with a stated window (target label kept)."""
    import nibabel as nib

    reject_unknown_options("ct_nifti", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"ct_nifti: {root} is not a directory")
    target = as_int(label, "label")
    win_name, level, width = parse_window(window)
    pairs = find_pairs(root)
    if not pairs:
        raise FileNotFoundError(f"ct_nifti: no imagesTr/ + labelsTr/ or images/ + labels/ folders under {root}")
    cases: dict[str, tuple[Path, Path, Path]] = {}
    for task, img_dir, lab_dir in pairs:
        if (task / "imagesTs").is_dir():
            report.flag(relpath(task / "imagesTs", root), "imagesTs/ has no labels; not used")
        labels = {case_name(p): p for p in _nifti_files(lab_dir)}
        used: set[str] = set()
        for img in _nifti_files(img_dir):
            case = case_name(img)
            if case in cases:
                report.skip(relpath(img, root), f"duplicate case {case!r} (also {relpath(cases[case][1], root)})")
                continue
            if case not in labels:
                report.skip(relpath(img, root), f"no label volume {lab_dir.name}/{case}.nii.gz")
                continue
            cases[case] = (task, img, labels[case])
            used.add(case)
        for case, p in labels.items():
            if case not in used and case not in cases:
                report.skip(relpath(p, root), "label volume without an image volume")
    splits = resolve_splits(cases, source="ct_nifti", seed=seed, report=report, split_file=split_file,
                            fractions=parse_fractions(fractions))
    records: list[Record] = []
    for case, (task, img_path, lab_path) in progress(sorted(cases.items()), desc="ct_nifti"):
        item = relpath(img_path, root)
        try:  # the label volume first: a case without the target label never loads its image
            lab = nib.as_closest_canonical(nib.load(lab_path))
            seg = np.rint(np.asarray(lab.get_fdata(dtype=np.float32))).astype(np.int32)
            hits = np.nonzero((seg == target).any(axis=(0, 1)))[0] if seg.ndim == 3 else np.array([], int)
            if hits.size == 0:
                present = sorted(int(v) for v in np.unique(seg) if v != 0)
                report.skip(item, f"no slice contains label {target} (labels present: {present})")
                continue
            vol = nib.as_closest_canonical(nib.load(img_path))
            hu = np.asarray(vol.get_fdata(dtype=np.float32))
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for corrupt files
            report.skip(item, f"unreadable NIfTI pair ({type(exc).__name__}: {exc}); re-download it")
            continue
        if hu.ndim != 3 or seg.shape != hu.shape:
            report.skip(item, f"image volume {hu.shape} and label volume {seg.shape} must be the same 3-D shape")
            continue
        spacing = [float(s) for s in vol.header.get_zooms()[:3]]
        label_name = _label_names(task).get(str(target))
        for z in hits:
            z = int(z)
            records.append(Record(
                image_id=f"ct_nifti/{case}_z{z:03d}", source="ct_nifti", modality="ct", task="segmentation",
                image=apply_window(radiological(hu[:, :, z]), level, width),
                mask=radiological(seg[:, :, z] == target), split=splits[case],
                meta={"image_file": item, "label_file": relpath(lab_path, root), "case": case, "slice": z,
                      "n_slices": int(hu.shape[2]), "label": target, "label_name": label_name,
                      "window": {"name": win_name, "level": level, "width": width, "unit": "HU"},
                      "orientation": "axial, RAS+ canonical, radiological view", "spacing_mm": spacing,
                      "licence": LICENCE, "notes": []},
            ))
    return records
