"""ISIC 2016 Task 1 lesion segmentation (dermoscopy): ``--sources isic2016=PATH``.

Expected layout (the four challenge ZIPs unpacked side by side under ``PATH``; folder names are
matched case-insensitively)::

    PATH/ISBI2016_ISIC_Part1_Training_Data/ISIC_0000000.jpg            (900 JPEG images)
    PATH/ISBI2016_ISIC_Part1_Training_GroundTruth/ISIC_0000000_Segmentation.png
    PATH/ISBI2016_ISIC_Part1_Test_Data/ISIC_0000003.jpg                (379 JPEG images)
    PATH/ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_0000003_Segmentation.png

Masks are 8-bit PNGs with 0 (background) / 255 (lesion). Splits: the official test set is ``test``;
the official training set is divided into ``train`` / ``validation`` by a seeded draw recorded in
``split_file`` (reused on rebuild).

Licence: CC0 1.0 as listed for the ISIC 2016 challenge data (check the ISIC Archive terms).
Get it from https://challenge.isic-archive.com/data/ (ISIC 2016, Task 1). Cite Gutman et al. 2016,
arXiv:1605.01397.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    list_files,
    pair_by_stem,
    parse_fractions,
    reject_unknown_options,
    resolve_splits,
    segmentation_records,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "CC0 1.0 (ISIC 2016 challenge listing)"
FOLDERS = {
    "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
    "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
}


def _child(root: Path, name: str) -> Path | None:
    for c in root.iterdir():
        if c.is_dir() and c.name.lower() == name.lower():
            return c
    return None


@register_source(
    "isic2016",
    layout="PATH/ISBI2016_ISIC_Part1_{Training,Test}_Data/ISIC_<id>.jpg + "
    "PATH/ISBI2016_ISIC_Part1_{Training,Test}_GroundTruth/ISIC_<id>_Segmentation.png",
    licence=LICENCE,
    reference="https://challenge.isic-archive.com/data/ (ISIC 2016 Task 1); Gutman et al. 2016",
)
def load_isic2016(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """ISIC 2016 Task 1: dermoscopic images with binary lesion masks (official train/test)."""
    reject_unknown_options("isic2016", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"isic2016: {root} is not a directory")
    items: dict[str, tuple[Path, list[Path]]] = {}
    official: dict[str, str] = {}
    found_any = False
    for split, (data_name, gt_name) in FOLDERS.items():
        data_dir, gt_dir = _child(root, data_name), _child(root, gt_name)
        if data_dir is None and gt_dir is None:
            report.flag(split, f"no {data_name}/ or {gt_name}/ under {root}: the official {split} set is missing")
            continue
        if data_dir is None or gt_dir is None:
            missing = data_name if data_dir is None else gt_name
            raise FileNotFoundError(f"isic2016: {missing}/ is missing under {root} (both {data_name}/ and {gt_name}/ "
                                    "are needed)")
        found_any = True
        pairing = pair_by_stem(list_files(data_dir, report=report, root=root), list_files(gt_dir, report=report, root=root),
                               mask_suffix="_Segmentation")
        pairing.report_to(report, expected=f"{gt_name}/<id>_Segmentation.png", root=root)
        for stem, pair in pairing.pairs.items():
            if stem in items:
                report.skip(pair[0], f"image {stem} appears in more than one official split; kept the first")
                continue
            items[stem] = pair
            official[stem] = split
    if not found_any:
        raise FileNotFoundError(f"isic2016: none of {sorted(n for pair in FOLDERS.values() for n in pair)} found "
                                f"under {root}; unpack the ISIC 2016 Task 1 ZIPs there")
    splits = resolve_splits(items, source="isic2016", seed=seed, report=report, split_file=split_file,
                            official=official, fractions=parse_fractions(fractions))
    work = [(stem, img, masks, splits[stem], {"official_split": official[stem]})
            for stem, (img, masks) in sorted(items.items())]
    return segmentation_records(work, source="isic2016", modality="dermoscopy", root=root, report=report,
                                licence=LICENCE, total=len(work))
