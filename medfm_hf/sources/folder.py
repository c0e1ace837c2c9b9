"""The generic image + mask folder source (``--sources folder=PATH:modality``).

Expected layout (either form)::

    PATH/images/<stem>.png|jpg|bmp|tif     PATH/<stem>.png
    PATH/masks/<stem><suffix>.png|jpg      PATH/<stem>_mask.png          (same folder)

* Masks are paired with images by stem: ``<stem><mask_suffix>`` (default ``""`` when the masks have
  their own folder, ``"_mask"`` when they share the image folder; ``mask_suffix=_Segmentation`` for
  ISIC-style names). Several masks of one image (``<stem><suffix>_1``, ``<stem><suffix>_2`` ...) are
  unioned.
* JPEG masks are thresholded at 127 (``threshold=``); a lossless mask with more than two values is
  thresholded and flagged; a small-valued label map (e.g. ``0/1/2``) is skipped with a reason.
* 16-bit images stay ``uint16``; RGBA loses its alpha channel; palette images become RGB or grey;
  grey modalities store identical RGB channels as grey, colour modalities replicate grey to RGB.
* Field of view (optional, ``fov=FOLDER``): ``PATH/FOLDER/<stem>.png`` (non-zero = inside) is passed
  through as the record's ``fov``; without one (or if its shape differs, flagged) it is detected
  from the image when the record is written (:func:`medfm_hf.perturbations.fov.detect_fov`).
* Splits: a seeded train/validation/test draw per stem (``fractions=0.7,0.1,0.2``), recorded in
  ``split_file`` and reused, never re-drawn, when that file exists.

Bad input never stops the load: unreadable or truncated images, size mismatches, images without a
mask, masks without an image, duplicate stems and label-map masks are skipped; empty and
non-binary masks are kept and flagged; every case is in the :class:`SourceReport`. An unknown
modality is an immediate error.

Licence: whatever the user's data carries (recorded as ``user-provided``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    MASK_THRESHOLD,
    as_int,
    check_modality,
    list_files,
    load_pair,
    pair_by_stem,
    parse_fractions,
    progress,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LAYOUT = (
    "PATH/images/<stem>.* + PATH/masks/<stem>[suffix].*  or  PATH/<stem>.* + PATH/<stem>_mask.*; "
    "options modality (required), mask_suffix, images, masks, threshold, fractions, fov"
)


def find_layout(root: Path, images: str | None, masks: str | None, mask_suffix: str | None) -> tuple[Path, Path, str]:
    """Resolve the image folder, mask folder and mask suffix of a folder dataset."""
    if not root.is_dir():
        raise FileNotFoundError(f"folder source: {root} is not a directory")
    img_dir = root / images if images else None
    mask_dir = root / masks if masks else None
    if img_dir is None and mask_dir is None and (root / "images").is_dir() and (root / "masks").is_dir():
        img_dir, mask_dir = root / "images", root / "masks"
    img_dir = img_dir or root
    mask_dir = mask_dir or img_dir
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"folder source: {d} is not a directory (expected layout: {LAYOUT})")
    if mask_suffix is None:
        mask_suffix = "_mask" if mask_dir == img_dir else ""
    if mask_dir == img_dir and not mask_suffix:
        raise ValueError("folder source: images and masks share a folder, so mask_suffix must not be empty")
    return img_dir, mask_dir, mask_suffix


def collect_pairs(img_dir: Path, mask_dir: Path, mask_suffix: str, report: SourceReport | None = None,
                  root: Path | None = None):
    """Pair the files of ``img_dir`` with those of ``mask_dir`` (see :func:`pair_by_stem`).

    With ``report``, entries that are not files (sub-folders, broken or looping links) are reported.
    """
    if img_dir == mask_dir:
        files = list_files(img_dir, report=report, root=root)
        masks = [f for f in files if mask_suffix in f.stem]
        images = [f for f in files if mask_suffix not in f.stem]
    else:
        images = list_files(img_dir, report=report, root=root)
        masks = list_files(mask_dir, report=report, root=root)
    return pair_by_stem(images, masks, mask_suffix=mask_suffix)


@register_source("folder", layout=LAYOUT, licence="user-provided", reference="your own image + mask folders")
def load_folder(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    modality: str | None = None,
    mask_suffix: str | None = None,
    images: str | None = None,
    masks: str | None = None,
    threshold: int | str = MASK_THRESHOLD,
    fractions: str | None = None,
    split_file: str | None = None,
    fov: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """Generic image + mask folder (segmentation) for any modality."""
    reject_unknown_options("folder", unknown)
    modality = check_modality(modality, source="folder")
    thr = as_int(threshold, "threshold")
    fr = parse_fractions(fractions)
    root = Path(path)
    img_dir, mask_dir, suffix = find_layout(root, images, masks, mask_suffix)
    pairing = collect_pairs(img_dir, mask_dir, suffix, report, root)
    pairing.report_to(report, expected=f"{mask_dir.name}/<stem>{suffix}.* or <stem>{suffix}_<k>.*", root=root)
    splits = resolve_splits(pairing.pairs, source="folder", seed=seed, report=report, split_file=split_file,
                            fractions=fr)
    records: list[Record] = []
    for stem, (img_path, mask_paths) in progress(sorted(pairing.pairs.items()), desc="folder"):
        loaded = load_pair(img_path, mask_paths, modality=modality, report=report, item=relpath(img_path, root),
                           threshold=thr)
        if loaded is None:
            continue
        image, mask, notes = loaded
        fov_mask, fov_note = _supplied_fov(root, fov, stem, image.shape[:2])
        if fov_note:
            notes = [*notes, fov_note]
        records.append(
            Record(
                image_id=f"folder/{stem}",
                source="folder",
                modality=modality,
                task="segmentation",
                image=image,
                mask=mask,
                split=splits[stem],
                meta={
                    "image_file": relpath(img_path, root),
                    "mask_files": [relpath(m, root) for m in mask_paths],
                    "notes": notes,
                    "licence": "user-provided",
                    "fov": "supplied" if fov_mask is not None else "detected",
                },
                fov=fov_mask,
            )
        )
    return records


def _supplied_fov(root: Path, folder: str | None, stem: str, shape: tuple[int, int]):
    """The FOV mask ``root/folder/<stem>.*`` as bool, or ``(None, note)`` when absent or mis-sized."""
    if not folder:
        return None, ""
    import cv2

    hits = [f for f in list_files(root / folder) if f.stem == stem] if (root / folder).is_dir() else []
    if not hits:
        return None, f"no fov file for {stem} in {folder}/: detected instead"
    arr = cv2.imread(str(hits[0]), cv2.IMREAD_GRAYSCALE)
    if arr is None or arr.shape != tuple(shape):
        return None, f"fov file {hits[0].name} unreadable or not {shape[1]}x{shape[0]}: detected instead"
    return arr > 0, ""
