"""Brain tumour MRI (Cheng et al., figshare; T1-weighted contrast-enhanced): ``--sources brain_tumor_mri=PATH``.

Two layouts are recognised.

1. The figshare release (four ZIPs ``brainTumorDataPublic_*.zip`` unpacked anywhere under ``PATH``)::

       PATH/**/1.mat ... PATH/**/3064.mat      (MATLAB v7.3 = HDF5, read with h5py)

   Each file holds a struct ``cjdata`` with ``image`` (512x512 or 256x256 int16), ``tumorMask``
   (binary), ``label`` (1 meningioma, 2 glioma, 3 pituitary tumour), ``PID`` (patient id, UTF-16 code
   units) and ``tumorBorder`` (unused). HDF5 stores MATLAB arrays transposed, so arrays are
   transposed back. Older MATLAB v5 files are read with :func:`scipy.io.loadmat`. Images are kept
   lossless as ``uint16`` (negative values are an error). The seeded split is drawn per **patient**
   (``PID``) so one patient's slices never straddle train and test.
2. The common PNG repackaging (e.g. Kaggle "brain tumor segmentation")::

       PATH/images/<n>.png + PATH/masks/<n>.png      (or one level deeper)

   Split per image (no patient id is available).

No official split exists (``cvind.mat`` holds 5-fold cross-validation indices, not a test set): the
seeded draw is recorded in ``split_file`` and reused.

Licence: CC BY 4.0. Get it from https://doi.org/10.6084/m9.figshare.1512427 (Cheng, Jun; "brain tumor
dataset"). Cite Cheng et al., PLoS ONE 10(10):e0140381, 2015.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    find_dir,
    list_files,
    pair_by_stem,
    parse_fractions,
    progress,
    reject_unknown_options,
    relpath,
    resolve_splits,
    segmentation_records,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "CC BY 4.0"
TUMOUR_TYPES = {1: "meningioma", 2: "glioma", 3: "pituitary"}


class MatFileError(ValueError):
    """A ``.mat`` file of the figshare release is unreadable or lacks the expected fields."""


def _to_uint(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        return img
    if img.size == 0:
        raise MatFileError(f"{name}: empty image")
    if np.issubdtype(img.dtype, np.floating) and not np.all(np.isfinite(img) & (img == np.round(img))):
        raise MatFileError(f"{name}: image has non-integer values; cannot store it losslessly")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 65535:
        raise MatFileError(f"{name}: image values {lo:g}..{hi:g} do not fit uint16; the file is not from the release")
    return img.astype(np.uint16)


def read_cjdata(path: Path) -> dict[str, Any]:
    """Read one figshare ``.mat`` file: ``image`` (uint16), ``mask`` (bool), ``label`` (int), ``pid`` (str)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f["cjdata"]
            image = np.asarray(g["image"][()]).T
            mask = np.asarray(g["tumorMask"][()]).T
            label = int(np.asarray(g["label"][()]).ravel()[0])
            pid_codes = np.asarray(g["PID"][()]).ravel() if "PID" in g else np.array([], np.uint16)
            pid = "".join(chr(int(c)) for c in pid_codes if int(c) != 0)
    except KeyError as exc:
        raise MatFileError(f"{path.name}: no cjdata/{exc.args[0] if exc.args else '?'} field; not a figshare "
                           "brain tumour file") from None
    except OSError:
        try:
            from scipy.io import loadmat

            cj = loadmat(path, simplify_cells=True)["cjdata"]
            image, mask = np.asarray(cj["image"]), np.asarray(cj["tumorMask"])
            label, pid = int(np.asarray(cj["label"]).ravel()[0]), str(cj.get("PID", ""))
        except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
            raise MatFileError(f"{path.name}: unreadable .mat file ({exc}); re-download it") from None
    image = _to_uint(image, path.name)
    if image.ndim != 2:
        raise MatFileError(f"{path.name}: image must be 2-D, got shape {image.shape}")
    if mask.shape != image.shape:
        raise MatFileError(f"{path.name}: tumorMask shape {mask.shape} differs from image shape {image.shape}")
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 1}:
        raise MatFileError(f"{path.name}: tumorMask is not binary (values {values[:6].tolist()})")
    return {"image": image, "mask": mask.astype(bool), "label": label, "pid": pid}


def _load_mat_release(root: Path, mats: list[Path], *, seed: int, report: SourceReport, split_file: str | None,
                      fractions: tuple[float, float, float]) -> list[Record]:
    loaded: list[tuple[Path, dict[str, Any]]] = []
    for p in progress(mats, desc="brain_tumor_mri"):
        try:
            loaded.append((p, read_cjdata(p)))
        except MatFileError as exc:
            report.skip(relpath(p, root), str(exc))
    seen: dict[str, Path] = {}
    unique: list[tuple[Path, dict[str, Any]]] = []
    for p, d in loaded:
        if p.stem in seen:
            report.skip(relpath(p, root), f"duplicate stem {p.stem!r} (also {relpath(seen[p.stem], root)})")
            continue
        seen[p.stem] = p
        unique.append((p, d))
    groups = {(f"patient:{d['pid']}" if d["pid"] else f"image:{p.stem}") for p, d in unique}
    splits = resolve_splits(groups, source="brain_tumor_mri", seed=seed, report=report, split_file=split_file,
                            fractions=fractions)
    records: list[Record] = []
    for p, d in sorted(unique, key=lambda t: (len(t[0].stem), t[0].stem)):
        group = f"patient:{d['pid']}" if d["pid"] else f"image:{p.stem}"
        if d["label"] not in TUMOUR_TYPES:
            report.flag(relpath(p, root), f"unknown tumour label {d['label']} (expected 1, 2 or 3)")
        if not d["mask"].any():
            report.flag(relpath(p, root), "empty tumorMask; kept with bbox None")
        records.append(Record(
            image_id=f"brain_tumor_mri/{p.stem}", source="brain_tumor_mri", modality="mri", task="segmentation",
            image=d["image"], mask=d["mask"], split=splits[group],
            meta={"image_file": relpath(p, root), "patient": d["pid"] or None, "label": d["label"],
                  "tumour_type": TUMOUR_TYPES.get(d["label"]), "licence": LICENCE, "notes": []},
        ))
    return records


@register_source(
    "brain_tumor_mri",
    layout="PATH/**/<n>.mat (figshare v7.3: cjdata.image, tumorMask, label, PID)  or  PATH/images/<n>.png + "
    "PATH/masks/<n>.png",
    licence=LICENCE,
    reference="https://doi.org/10.6084/m9.figshare.1512427 ; Cheng et al. 2015",
)
def load_brain_tumor_mri(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """Brain tumour MRI (figshare .mat release or PNG images/ + masks/) with tumour masks."""
    reject_unknown_options("brain_tumor_mri", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"brain_tumor_mri: {root} is not a directory")
    fr = parse_fractions(fractions)
    mats = sorted((p for p in root.rglob("*.mat") if p.name.lower() != "cvind.mat"), key=lambda p: p.as_posix())
    if mats:
        return _load_mat_release(root, mats, seed=seed, report=report, split_file=split_file, fractions=fr)
    base = root if (root / "images").is_dir() else find_dir(root, ["images"], depth=2)
    if base is not None and base.name.lower() == "images":
        base = base.parent
    if base is None or not (base / "images").is_dir() or not (base / "masks").is_dir():
        raise FileNotFoundError(f"brain_tumor_mri: no *.mat files and no images/ + masks/ folders under {root}")
    pairing = pair_by_stem(list_files(base / "images", report=report, root=root),
                           list_files(base / "masks", report=report, root=root))
    pairing.report_to(report, expected="masks/<n>.png", root=root)
    splits = resolve_splits(pairing.pairs, source="brain_tumor_mri", seed=seed, report=report,
                            split_file=split_file, fractions=fr)
    work = [(stem, img, masks, splits[stem], {}) for stem, (img, masks) in sorted(pairing.pairs.items())]
    return segmentation_records(work, source="brain_tumor_mri", modality="mri", root=root, report=report,
                                licence=LICENCE, total=len(work))
