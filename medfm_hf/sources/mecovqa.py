"""MeCoVQA-G grounding (MedPLIB; images from SA-Med2D-20M): ``--sources mecovqa=PATH``.

Expected layout::

    PATH/MeCoVQA_Grounding_train.json, PATH/MeCoVQA_Grounding_test.json
        (or mecovqa_bbox_format_{train,test}.json; every top-level *.json whose name contains
        "ground" or "bbox" is read, else every top-level *.json)
    PATH/<image path of each item>  e.g. PATH/SAMed2Dv1/images/ct_00--AbdomenCT1K--Case_00001--x_0050.png
        (``images=SUBDIR`` if the image paths are relative to a subfolder)

Each item is LLaVA-style: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n
question"}, {"from": "gpt", "value": "... [x0, y0, x1, y1] ..."}]}``; explicit ``question`` and
``bbox`` / ``box`` / ``target_bbox`` keys are used when present. The box is ``[x0, y0, x1, y1]``; its
unit is ``box_units=auto`` (all four numbers <= 1: normalised to the image, else pixels),
``normalized`` or ``pixels``. The record's ``target_bbox`` is always in **pixels of the stored
image**; a box that is inverted or falls outside the image is skipped with the reason.

Modality: the item's ``modality`` key when present, else the SA-Med2D file-name prefix before
``--`` (``ct_*`` CT, ``mr_*`` MRI, ``x_ray`` X-ray, ``ultrasound``, ``endoscopy``, ``fundus_photography``,
``dermoscopy``, ``histopathology``/``microscopy`` pathology, ``oct``); PET and other unmapped
prefixes fall back to the ``modality`` option or are skipped with the reason.

Splits: the release's ``train`` / ``test`` files (validation carved from train by a seeded draw per
image, recorded in ``split_file``); files naming no split get the seeded draw.

Licence: MeCoVQA annotations are released for research use (Huang et al., "Towards a Multimodal Large
Language Model with Pixel-Level Insight for Biomedicine", AAAI 2025; https://github.com/ShawnHuang497/MedPLIB);
the SA-Med2D-20M images keep their source datasets' licences (https://huggingface.co/datasets/OpenGVLab/SA-Med2D-20M).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    ImageReadError,
    check_modality,
    conform_channels,
    parse_fractions,
    progress,
    read_image,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "research use (MeCoVQA); images keep their SA-Med2D source licences"
#: Normalised (letters only) SA-Med2D prefix / modality name -> our modality (first matching start wins).
PREFIX_MODALITY: tuple[tuple[str, str], ...] = (
    ("xray", "xray"),
    ("ct", "ct"),
    ("mr", "mri"),
    ("ultrasound", "ultrasound"),
    ("endoscop", "endoscopy"),
    ("fundus", "fundus"),
    ("dermoscop", "dermoscopy"),
    ("oct", "oct"),
    ("histopatholog", "pathology"),
    ("patholog", "pathology"),
    ("microscop", "pathology"),
)
_NUM = r"(-?\d+(?:\.\d+)?)"
_BOX_RE = re.compile(r"[\[(]\s*" + r"\s*,\s*".join([_NUM] * 4) + r"\s*[\])]")


def modality_of(name: str) -> str | None:
    """Our modality for a modality name or an SA-Med2D file-name prefix (``None`` if unmapped)."""
    key = re.sub(r"[^a-z]", "", name.lower())
    if key == "us":
        return "ultrasound"
    for prefix, modality in PREFIX_MODALITY:
        if key.startswith(prefix):
            return modality
    return None


def parse_box(item: dict[str, Any]) -> tuple[list[float] | None, str]:
    """The raw target box of an item and where it came from (explicit key, or the answer text)."""
    for k in ("bbox", "box", "target_bbox", "gt_bbox"):
        if isinstance(item.get(k), (list, tuple)) and len(item[k]) == 4:
            return [float(v) for v in item[k]], k
    for turn in item.get("conversations", []):
        if turn.get("from") in ("gpt", "assistant"):
            m = _BOX_RE.search(str(turn.get("value", "")))
            if m:
                return [float(v) for v in m.groups()], "answer"
    return None, ""


def question_of(item: dict[str, Any]) -> str | None:
    """The question: the ``question`` key or the first human turn without the ``<image>`` token."""
    if item.get("question"):
        return str(item["question"]).strip()
    for turn in item.get("conversations", []):
        if turn.get("from") in ("human", "user"):
            return str(turn.get("value", "")).replace("<image>", "").strip() or None
    return None


def to_pixels(box: list[float], width: int, height: int, units: str) -> tuple[list[float] | None, str, str]:
    """``(pixel box or None, units used, problem)`` for a raw ``[x0, y0, x1, y1]`` box."""
    used = units if units != "auto" else ("normalized" if max(box) <= 1.0 and min(box) >= 0.0 else "pixels")
    x0, y0, x1, y1 = box
    if used == "normalized":
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    px = [float(x0), float(y0), float(x1), float(y1)]
    if not (x0 < x1 and y0 < y1):
        return None, used, f"box {box} is empty or inverted (expected [x0, y0, x1, y1])"
    if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
        return None, used, (f"box {box} read as {used} falls outside the {width}x{height} image; "
                            "check box_units=normalized|pixels")
    return px, used, ""


def _split_of(name: str) -> str | None:
    low = name.lower()
    if "train" in low:
        return "train"
    if "test" in low:
        return "test"
    if re.search(r"val", low):
        return "validation"
    return None


@register_source(
    "mecovqa",
    layout="PATH/*Grounding*_{train,test}.json | mecovqa_bbox_format_{train,test}.json (id, image, conversations "
    "with [x0,y0,x1,y1]) + PATH/[images=SUBDIR/]<image path>; options box_units, modality (fallback)",
    licence=LICENCE,
    reference="https://github.com/ShawnHuang497/MedPLIB ; Huang et al. AAAI 2025",
)
def load_mecovqa(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    images: str | None = None,
    box_units: str = "auto",
    modality: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """MeCoVQA-G: a question and a target box per image (task ``grounding``), box in stored-image pixels."""
    reject_unknown_options("mecovqa", unknown)
    if box_units not in ("auto", "normalized", "pixels"):
        raise ValueError(f"mecovqa: box_units={box_units!r} must be auto, normalized or pixels")
    default = check_modality(modality, source="mecovqa") if modality else None
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"mecovqa: {root} is not a directory")
    img_root = root / images if images else root
    if not img_root.is_dir():
        raise FileNotFoundError(f"mecovqa: image folder {img_root} does not exist")
    jsons = sorted(root.glob("*.json"))
    chosen = [j for j in jsons if re.search(r"ground|bbox", j.name, re.IGNORECASE)] or jsons
    if not chosen:
        raise FileNotFoundError(f"mecovqa: no *.json annotation file in {root}")
    rows: list[tuple[str, dict[str, Any], str | None]] = []
    seen: set[str] = set()
    for jf in chosen:
        try:
            data = json.loads(jf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            report.skip(jf.name, f"unreadable JSON ({exc})")
            continue
        for i, item in enumerate(data if isinstance(data, list) else [data]):
            where = f"{jf.name}[{i}]"
            if not isinstance(item, dict) or not (item.get("image") or item.get("image_path")):
                report.skip(where, "item without an image path")
                continue
            key = str(item.get("id") or f"{jf.stem}_{i}")
            if key in seen:
                report.skip(where, f"duplicate id {key!r}")
                continue
            seen.add(key)
            rows.append((key, item, _split_of(jf.name)))
    image_of = {key: str(item.get("image") or item.get("image_path")) for key, item, _ in rows}
    rank = {"train": 0, "validation": 1, "test": 2}
    named: dict[str, set[str]] = {}
    for k, _, sp in rows:
        if sp:
            named.setdefault(image_of[k], set()).add(sp)
    official: dict[str, str] = {}
    for rel, names in named.items():
        official[rel] = max(names, key=rank.__getitem__)  # an image in two files: the later split wins
        if len(names) > 1:
            both = " and ".join(sorted(names, key=rank.__getitem__, reverse=True))
            report.flag(rel, f"image is in both the {both} files; all its items go to {official[rel]}")
    splits = resolve_splits(set(image_of.values()), source="mecovqa", seed=seed, report=report,
                            split_file=split_file, official=official, fractions=parse_fractions(fractions))
    records: list[Record] = []
    for key, item, _ in progress(rows, desc="mecovqa"):
        rel = image_of[key]
        question = question_of(item)
        raw_box, box_from = parse_box(item)
        if question is None or raw_box is None:
            report.skip(key, "no question" if question is None else "no target box [x0, y0, x1, y1] in the item")
            continue
        mod_name = str(item.get("modality") or Path(rel).name.split("--")[0])
        mod = modality_of(mod_name) or default
        if mod is None:
            report.skip(key, f"modality {mod_name!r} is not mapped; pass modality=<name> to set a fallback")
            continue
        notes: list[str] = []
        try:
            image = conform_channels(read_image(img_root / rel, notes), mod, notes)
        except ImageReadError as exc:
            report.skip(key, str(exc))
            continue
        h, w = image.shape[:2]
        box, used, problem = to_pixels(raw_box, w, h, box_units)
        if box is None:
            report.skip(key, problem)
            continue
        records.append(Record(
            image_id=f"mecovqa/{key}", source="mecovqa", modality=mod, task="grounding", image=image,
            split=splits[rel], question=question, target_bbox=box,
            meta={"image_file": relpath(img_root / rel, root), "raw_box": raw_box, "box_units": used,
                  "box_from": box_from, "licence": LICENCE, "notes": notes},
        ))
    return records
