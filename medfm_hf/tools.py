"""The two data-preparation tools of the original project, as functions (CLI: ``mask2box``, ``resize``).

* :func:`masks_to_boxes` -- every mask in a folder -> its box ``[x0, y0, x1, y1]`` (pixels, ``x1``/``y1``
  exclusive, the convention of :func:`medfm_hf.records.mask_to_bbox`), optionally one box per connected
  component; :func:`write_boxes` saves them as JSON or CSV.
* :func:`resize_pairs` -- image + mask pairs to ``size x size`` lossless PNGs: ``INTER_AREA`` when an
  axis shrinks, ``INTER_CUBIC`` when both grow (bit depth kept, values saturated), nearest-neighbour
  for the binarised masks (written as 0/255), so a mask never gains grey edge values.

Bad files are skipped with a reason in the returned :class:`~medfm_hf.sources.base.SourceReport`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf.io import atomic_write_bytes
from medfm_hf.records import encode_png, mask_to_bbox
from medfm_hf.sources._common import (
    IMAGE_EXTENSIONS,
    MASK_THRESHOLD,
    ImageReadError,
    MaskError,
    list_files,
    pair_by_stem,
    progress,
    read_image,
    read_mask,
    union_masks,
)
from medfm_hf.sources.base import SourceReport

logger = logging.getLogger(__name__)

BOX_FIELDS = ("file", "component", "width", "height", "x0", "y0", "x1", "y1", "area")
MAX_RESIZE = 16384  # largest --size: one 16384^2 RGB 16-bit image with its mask is about 2 GiB in memory
MAX_THRESHOLD = 254  # foreground is > threshold on the 8-bit scale (x257 for 16-bit masks)


def check_threshold(threshold: Any) -> int:
    """The mask threshold as an int in 0-254 (the 8-bit range minus the top value, which leaves no foreground)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or \
            not 0 <= int(threshold) <= MAX_THRESHOLD:
        raise ValueError(f"--threshold must be an integer in 0-{MAX_THRESHOLD} (on the 8-bit scale, scaled by 257 for "
                         f"16-bit masks; foreground is > threshold), got {threshold!r}")
    return int(threshold)


def resize_memory_bytes(size: int, channels: int = 3, bytes_per_value: int = 2) -> int:
    """Peak memory of resizing one image + mask to ``size x size`` (output, a working copy, the mask)."""
    return size * size * (2 * channels * bytes_per_value + 2)


def _same_or_inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def masks_to_boxes(
    mask_dir: str | os.PathLike[str],
    *,
    threshold: int = MASK_THRESHOLD,
    per_component: bool = False,
    report: SourceReport | None = None,
) -> list[dict[str, Any]]:
    """Boxes of every mask image in ``mask_dir`` (sorted by file name).

    Parameters
    ----------
    threshold
        Foreground is ``> threshold`` for JPEG or non-binary masks (see
        :func:`medfm_hf.sources._common.binarise_mask`).
    per_component
        One row per 8-connected component instead of one box around the whole mask.
    report
        Collects unreadable files (skipped) and empty / thresholded masks (flagged).

    Returns
    -------
    list of dict
        Keys :data:`BOX_FIELDS`; an empty mask gives one row with ``None`` coordinates and area 0;
        ``component`` is 0 for the whole-mask box, else 1, 2, ... in scan order.
    """
    from scipy import ndimage

    threshold = check_threshold(threshold)
    folder = Path(mask_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask2box: {folder} is not a directory")
    report = report if report is not None else SourceReport("mask2box")
    rows: list[dict[str, Any]] = []
    for f in progress(list_files(folder), desc="mask2box"):
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            report.skip(f.name, f"not an image file ({f.suffix or 'no extension'})")
            continue
        try:
            mask, problem = read_mask(f, threshold=threshold)
        except (ImageReadError, MaskError) as exc:
            report.skip(f.name, str(exc))
            continue
        if problem:
            report.flag(f.name, problem)
        h, w = mask.shape
        base = {"file": f.name, "width": w, "height": h}
        if not mask.any():
            report.flag(f.name, "empty mask: no box")
            rows.append({**base, "component": 0, "x0": None, "y0": None, "x1": None, "y1": None, "area": 0})
            continue
        if per_component:
            labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
            parts = [(k, labels == k) for k in range(1, n + 1)]
        else:
            parts = [(0, mask)]
        for k, part in parts:
            x0, y0, x1, y1 = mask_to_bbox(part)  # type: ignore[misc]
            rows.append({**base, "component": k, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "area": int(part.sum())})
    return rows


def write_boxes(rows: list[dict[str, Any]], out: str | os.PathLike[str]) -> None:
    """Write :func:`masks_to_boxes` rows to ``out``: ``.json`` (a list of objects) or ``.csv``."""
    from medfm_hf.io import atomic_path

    p = Path(out)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise ValueError(f"mask2box: output {p} must end in .json or .csv")
    if p.is_dir():
        raise ValueError(f"mask2box: output {p} is a folder; give a file name ending in .json or .csv")
    with atomic_path(p) as tmp:
        if suffix == ".json":
            Path(tmp).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(BOX_FIELDS))
                writer.writeheader()
                for r in rows:
                    writer.writerow({k: "" if r[k] is None else r[k] for k in BOX_FIELDS})


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size``: area averaging where an axis shrinks, bicubic where both grow."""
    import cv2

    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (size < h or size < w) else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``size x size`` (stays boolean)."""
    import cv2

    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


def resize_pairs(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    *,
    size: int,
    out_dir: str | os.PathLike[str],
    mask_suffix: str = "",
    threshold: int = MASK_THRESHOLD,
    report: SourceReport | None = None,
) -> list[dict[str, Any]]:
    """Resize every image + mask pair to ``size x size`` and write ``out_dir/images/<stem>.png`` and
    ``out_dir/masks/<stem>.png`` (lossless PNG; several masks of one image are unioned).

    Returns one row per written pair: ``stem``, original ``width``/``height``, the box of the resized
    mask. Unpaired, unreadable or mismatched files are skipped into ``report``.
    """
    if isinstance(size, bool) or int(size) < 1:
        raise ValueError(f"resize: --size must be a positive integer, got {size}")
    size = int(size)
    if size > MAX_RESIZE:
        gib = resize_memory_bytes(size) / 2**30
        raise ValueError(f"resize: --size {size} would need about {gib:.1f} GiB per image (RGB 16-bit); at most "
                         f"{MAX_RESIZE} is allowed")
    threshold = check_threshold(threshold)
    img_dir, mask_dir, out = Path(images_dir), Path(masks_dir), Path(out_dir)
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"resize: {d} is not a directory")
    for target in (out / "images", out / "masks"):
        for src in (img_dir, mask_dir):
            if _same_or_inside(target, src) or _same_or_inside(src, target):
                raise ValueError(f"resize: --out {out} would write {target} over the input folder {src}; choose an "
                                 "--out whose images/ and masks/ are not the inputs")
    if out.exists() and not out.is_dir():
        raise ValueError(f"resize: --out {out} is a file; choose a folder")
    report = report if report is not None else SourceReport("resize")
    pairing = pair_by_stem(list_files(img_dir), list_files(mask_dir), mask_suffix=mask_suffix)
    pairing.report_to(report, expected=f"{mask_dir.name}/<stem>{mask_suffix}.*", root=img_dir.parent)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for stem, (img_path, mask_paths) in progress(sorted(pairing.pairs.items()), desc="resize"):
        try:
            image = read_image(img_path)
            mask, problems = union_masks(mask_paths, image.shape[:2], threshold=threshold)
        except (ImageReadError, MaskError, ValueError) as exc:
            report.skip(img_path.name, str(exc))
            continue
        for problem in problems:
            report.flag(img_path.name, problem)
        small = resize_image(image, size)
        small_mask = resize_mask(mask, size)
        if mask.any() and not small_mask.any():
            report.flag(img_path.name, f"mask vanished when resized to {size}x{size}")
        atomic_write_bytes(out / "images" / f"{stem}.png", encode_png(small))
        atomic_write_bytes(out / "masks" / f"{stem}.png", encode_png(small_mask))
        rows.append({"stem": stem, "width": image.shape[1], "height": image.shape[0],
                     "bbox": mask_to_bbox(small_mask)})
    return rows
