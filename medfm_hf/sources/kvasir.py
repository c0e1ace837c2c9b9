"""Kvasir-SEG and HyperKvasir segmented images (endoscopy, polyps): ``--sources kvasir=PATH``.

Expected layout (either release; ``PATH`` may be the dataset folder or its parent)::

    PATH/Kvasir-SEG/images/<id>.jpg            PATH/segmented-images/images/<id>.jpg
    PATH/Kvasir-SEG/masks/<id>.jpg             PATH/segmented-images/masks/<id>.jpg
    PATH/Kvasir-SEG/kavsir_bboxes.json         PATH/segmented-images/bounding-boxes.json   (optional)

Masks are JPEG (lossy): foreground is ``> 127``. The box JSON (``{"<id>": {"height": H, "width": W,
"bbox": [{"label": "polyp", "xmin": .., "ymin": .., "xmax": .., "ymax": ..}]}}``) is copied to
``meta["provided_boxes"]`` as ``[xmin, ymin, xmax, ymax]``; the record's ``bbox`` is always the box of
the thresholded mask, and a provided box that disagrees with it by more than ``box_tolerance`` pixels
(default 3) is flagged. There is no official split: a seeded draw recorded in ``split_file``.

Licence: Kvasir-SEG is released for research and education (cite Jha et al., MMM 2020, "Kvasir-SEG:
A Segmented Polyp Dataset"); HyperKvasir is CC BY 4.0 (Borgli et al., Scientific Data 2020). Get them
from https://datasets.simula.no/kvasir-seg/ and https://datasets.simula.no/hyper-kvasir/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    as_int,
    find_dir,
    list_files,
    pair_by_stem,
    parse_fractions,
    reject_unknown_options,
    resolve_splits,
    segmentation_records,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "Kvasir-SEG: research and education use; HyperKvasir: CC BY 4.0"
BOX_FILES = ("kavsir_bboxes.json", "kvasir_bboxes.json", "bounding-boxes.json")


def _dataset_dir(root: Path) -> Path:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root
    found = find_dir(root, ["Kvasir-SEG", "segmented-images"], depth=2)
    if found is not None and (found / "images").is_dir() and (found / "masks").is_dir():
        return found
    raise FileNotFoundError(f"kvasir: no images/ + masks/ folders under {root}; expected Kvasir-SEG/images/*.jpg "
                            "+ Kvasir-SEG/masks/*.jpg or segmented-images/images + segmented-images/masks")


def read_provided_boxes(base: Path, report: SourceReport) -> dict[str, dict[str, Any]]:
    """The release's box JSON (if present) as ``{id: {"height", "width", "boxes": [[x0, y0, x1, y1], ...]}}``."""
    for name in BOX_FILES:
        p = base / name
        if not p.exists():
            continue
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            report.flag(name, f"box file not readable ({exc}); boxes come from the masks only")
            return {}
        out: dict[str, dict[str, Any]] = {}
        for key, entry in raw.items():
            try:
                boxes = [[int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"])] for b in entry.get("bbox", [])]
                out[key] = {"height": entry.get("height"), "width": entry.get("width"), "boxes": boxes}
            except (KeyError, TypeError, ValueError, AttributeError):
                report.flag(f"{name}:{key}", "malformed box entry ignored")
        return out
    return {}


@register_source(
    "kvasir",
    layout="PATH/{Kvasir-SEG|segmented-images}/images/<id>.jpg + masks/<id>.jpg [+ kavsir_bboxes.json | "
    "bounding-boxes.json]",
    licence=LICENCE,
    reference="https://datasets.simula.no/kvasir-seg/ ; Jha et al. 2020",
)
def load_kvasir(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    threshold: int | str = 127,
    box_tolerance: int | str = 3,
    **unknown: Any,
) -> list[Record]:
    """Kvasir-SEG / HyperKvasir polyp images with JPEG masks (thresholded at 127) and provided boxes."""
    reject_unknown_options("kvasir", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"kvasir: {root} is not a directory")
    tol = as_int(box_tolerance, "box_tolerance")
    base = _dataset_dir(root)
    pairing = pair_by_stem(list_files(base / "images", report=report, root=root),
                           list_files(base / "masks", report=report, root=root))
    pairing.report_to(report, expected="masks/<id>.jpg", root=root)
    provided = read_provided_boxes(base, report)
    splits = resolve_splits(pairing.pairs, source="kvasir", seed=seed, report=report, split_file=split_file,
                            fractions=parse_fractions(fractions))
    work = []
    for stem, (img, masks) in sorted(pairing.pairs.items()):
        extra: dict[str, Any] = {}
        if stem in provided:
            extra["provided_boxes"] = provided[stem]["boxes"]
        work.append((stem, img, masks, splits[stem], extra))
    records = segmentation_records(work, source="kvasir", modality="endoscopy", root=root, report=report,
                                   licence=LICENCE, threshold=as_int(threshold, "threshold"), total=len(work))
    for rec in records:
        stem = rec.image_id.split("/", 1)[1]
        info = provided.get(stem)
        if info is None or not info["boxes"] or rec.bbox is None:
            continue
        h, w = rec.image.shape[:2]
        if info["height"] is not None and (info["height"], info["width"]) != (h, w):
            report.flag(stem, f"box file says {info['width']}x{info['height']} but the image is {w}x{h}")
        boxes = info["boxes"]
        union = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if max(abs(a - b) for a, b in zip(union, rec.bbox)) > tol:
            report.flag(stem, f"provided box {union} differs from the mask's box {rec.bbox} by more than {tol} px")
    return records
