"""REFUGE-style fundus optic disc / cup label maps: ``--sources refuge=PATH``.

Each fundus image has one label map: **0 = optic cup, 128 = optic disc rim, 255 = background**. It
becomes two records: ``refuge/<stem>_disc`` (disc including the cup: value < 192) and
``refuge/<stem>_cup`` (value < 64). Values other than 0/128/255 (a resaved or lossy map) are snapped
to the nearest of the three and flagged.

Expected layout: images and label maps anywhere under ``PATH``; a file is a label map when one of its
folders is named like ``*Mask*``, ``*GT*``, ``*Annotation*`` or ``*label*`` (case-insensitive), and it
is paired with the image of the same stem. The official REFUGE release::

    PATH/Training400/{Glaucoma,Non-Glaucoma}/g0001.jpg | n0001.jpg
    PATH/Annotation-Training400/Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/g0001.bmp
    PATH/REFUGE-Validation400/V0001.jpg
    PATH/REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp
    PATH/REFUGE-Test400/T0001.jpg
    PATH/REFUGE-Test-GT/Disc_Cup_Masks/T0001.bmp

Splits are official, read from the image's folder names, top-down (``train`` -> train, ``val`` ->
validation, ``test`` -> test; so ``REFUGE2/train/images/`` + ``REFUGE2/train/mask/`` also works); images
whose folders name none of them get a seeded draw (recorded in ``split_file``). The glaucoma label (``Glaucoma`` / ``Non-Glaucoma`` folder, or a ``g``/``n`` file
prefix in the training set) goes to ``meta["glaucoma"]``.

Licence: REFUGE challenge data, research use under the challenge terms (Orlando et al., Medical Image
Analysis 59:101570, 2020). Get it from https://refuge.grand-challenge.org/ (registration) or the
REFUGE2 release at https://ai.baidu.com/broad/download.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    conform_channels,
    pair_by_stem,
    parse_fractions,
    progress,
    read_image,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "REFUGE challenge terms (research use)"
_MASK_DIR = re.compile(r"mask|gt|annotation|label", re.IGNORECASE)
LEVELS = np.array([0, 128, 255])


def _is_label_map(path: Path, root: Path) -> bool:
    return any(_MASK_DIR.search(part) for part in path.relative_to(root).parts[:-1])


def official_split(path: Path, root: Path) -> str | None:
    """The REFUGE split named by the image's folders below ``root``, top-down (None when none does):
    ``REFUGE-Test400/`` -> test, ``REFUGE-Validation400/`` -> validation, ``Training400/`` or
    ``REFUGE2/train/images/`` -> train."""
    for part in path.relative_to(root).parts[:-1]:
        low = part.lower()
        if "test" in low:
            return "test"
        if "val" in low:
            return "validation"
        if "train" in low:
            return "train"
    return None


def glaucoma_label(path: Path, root: Path) -> bool | None:
    """``True``/``False`` from a ``Glaucoma``/``Non-Glaucoma`` folder or a ``g``/``n`` stem prefix."""
    folders = [p.lower() for p in path.relative_to(root).parts[:-1]]
    if any(p in ("non-glaucoma", "non_glaucoma", "nonglaucoma") for p in folders):
        return False
    if "glaucoma" in folders:
        return True
    if re.fullmatch(r"g\d+", path.stem):
        return True
    if re.fullmatch(r"n\d+", path.stem):
        return False
    return None


def split_label_map(label: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(disc, cup, n_off)`` from a 0/128/255 label map; ``n_off`` counts pixels that were snapped."""
    lab = label.max(axis=2) if label.ndim == 3 else label
    lab = lab.astype(np.int32)
    if lab.max() > 255:
        lab = lab // 257
    n_off = int((~np.isin(lab, LEVELS)).sum())
    snapped = LEVELS[np.abs(lab[..., None] - LEVELS).argmin(axis=-1)]
    return snapped < 192, snapped < 64, n_off


@register_source(
    "refuge",
    layout="images + label maps (0 cup, 128 disc, 255 background) paired by stem, maps in *Mask*/*GT* folders; "
    "official Training400/ Annotation-Training400/Disc_Cup_Masks/ REFUGE-Validation400[-GT]/ REFUGE-Test400/ "
    "REFUGE-Test-GT/",
    licence=LICENCE,
    reference="https://refuge.grand-challenge.org/ ; Orlando et al. 2020",
)
def load_refuge(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """REFUGE fundus photographs: optic disc and optic cup records from one label map each."""
    reject_unknown_options("refuge", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"refuge: {root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    maps = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and _is_label_map(p, root)]
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not _is_label_map(p, root)]
    if not maps:
        raise FileNotFoundError(f"refuge: no label maps under {root} (expected e.g. Annotation-Training400/"
                                "Disc_Cup_Masks/*.bmp)")
    pairing = pair_by_stem(images, maps)
    pairing.report_to(report, expected="a label map <stem>.bmp/.png in a *Mask*/*GT* folder", root=root)
    official = {s: sp for s, (img, _) in pairing.pairs.items() if (sp := official_split(img, root))}
    splits = resolve_splits(pairing.pairs, source="refuge", seed=seed, report=report, split_file=split_file,
                            official=official, fractions=parse_fractions(fractions))
    records: list[Record] = []
    for stem, (img_path, map_paths) in progress(sorted(pairing.pairs.items()), desc="refuge"):
        item = relpath(img_path, root)
        if len(map_paths) > 1:
            report.skip(item, f"{len(map_paths)} label maps for one image ({', '.join(m.name for m in map_paths)})")
            continue
        notes: list[str] = []
        try:
            image = conform_channels(read_image(img_path, notes), "fundus", notes)
            label = read_image(map_paths[0])
        except ImageReadError as exc:
            report.skip(item, str(exc))
            continue
        if label.shape[:2] != image.shape[:2]:
            report.skip(item, f"label map is {label.shape[1]}x{label.shape[0]} but the image is "
                              f"{image.shape[1]}x{image.shape[0]} (WxH)")
            continue
        disc, cup, n_off = split_label_map(label)
        if n_off:
            report.flag(item, f"{n_off} label-map pixels not in {{0, 128, 255}} snapped to the nearest level")
        base_meta = {"image_file": item, "mask_files": [relpath(map_paths[0], root)], "notes": notes,
                     "licence": LICENCE, "glaucoma": glaucoma_label(img_path, root),
                     "official_split": official.get(stem)}
        for structure, mask in (("disc", disc), ("cup", cup)):
            if not mask.any():
                report.flag(f"{item} ({structure})", f"empty optic {structure} mask; kept with bbox None")
            records.append(Record(
                image_id=f"refuge/{stem}_{structure}", source="refuge", modality="fundus", task="segmentation",
                image=image, mask=mask, split=splits[stem],
                meta={**base_meta, "structure": "optic disc (including cup)" if structure == "disc" else "optic cup"},
            ))
    return records
