"""BUSI breast ultrasound segmentation: ``--sources busi=PATH``.

Expected layout (the Kaggle / Cairo University release; ``PATH`` may be ``Dataset_BUSI_with_GT`` or
its parent)::

    PATH/Dataset_BUSI_with_GT/benign/benign (1).png
    PATH/Dataset_BUSI_with_GT/benign/benign (1)_mask.png
    PATH/Dataset_BUSI_with_GT/benign/benign (4)_mask_1.png     (a second lesion: unioned)
    PATH/Dataset_BUSI_with_GT/malignant/malignant (1).png ...
    PATH/Dataset_BUSI_with_GT/normal/normal (1).png + normal (1)_mask.png   (empty masks)

Images are stored as 3-channel PNGs with identical channels; they become single-channel grey
(lossless). Every ``_mask*.png`` of an image is unioned. ``normal`` images have empty masks: they are
kept (``bbox`` None) and flagged in the report. The class (benign / malignant / normal) is in
``meta["class"]``. BUSI has no official split: a seeded train/validation/test draw per image is
recorded in ``split_file`` and reused.

Licence: CC0 1.0 (public domain) as released on Kaggle; the data article (Al-Dhabyani et al.,
Data in Brief 28, 2020, doi:10.1016/j.dib.2019.104863) is CC BY 4.0. Get it from
https://scholar.cu.edu.eg/?q=afahmy/pages/dataset or Kaggle "breast-ultrasound-images-dataset".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    find_dir,
    list_files,
    pair_by_stem,
    parse_fractions,
    reject_unknown_options,
    resolve_splits,
    segmentation_records,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "CC0 1.0 (Kaggle release); article CC BY 4.0"
CLASSES = ("benign", "malignant", "normal")


@register_source(
    "busi",
    layout="PATH/[Dataset_BUSI_with_GT/]{benign,malignant,normal}/'<class> (k).png' + '<class> (k)_mask.png' "
    "[+ '_mask_1.png' ...]",
    licence=LICENCE,
    reference="Al-Dhabyani et al. 2020, Data in Brief 28:104863",
)
def load_busi(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """BUSI breast ultrasound: benign / malignant / normal images with (unioned) lesion masks."""
    reject_unknown_options("busi", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"busi: {root} is not a directory")
    base = find_dir(root, ["Dataset_BUSI_with_GT"], depth=1) or root
    class_dirs = {c: base / c for c in CLASSES if (base / c).is_dir()}
    if not class_dirs:
        raise FileNotFoundError(f"busi: no benign/, malignant/ or normal/ folder under {base}; expected "
                                "Dataset_BUSI_with_GT/{benign,malignant,normal}/")
    for c in CLASSES:
        if c not in class_dirs:
            report.flag(c, f"class folder {c}/ is missing under {base}")
    items: dict[str, tuple[Path, list[Path], str]] = {}
    for cls, folder in class_dirs.items():
        files = list_files(folder, report=report, root=base)
        masks = [f for f in files if "_mask" in f.stem]
        images = [f for f in files if "_mask" not in f.stem]
        pairing = pair_by_stem(images, masks, mask_suffix="_mask")
        pairing.report_to(report, expected="'<name>_mask.png'", root=root)
        for stem, (img, mlist) in pairing.pairs.items():
            if stem in items:
                report.skip(img, f"stem {stem!r} also in {items[stem][2]}/; kept that one")
                continue
            items[stem] = (img, mlist, cls)
    splits = resolve_splits(items, source="busi", seed=seed, report=report, split_file=split_file,
                            fractions=parse_fractions(fractions))
    work = [(stem, img, mlist, splits[stem], {"class": cls}) for stem, (img, mlist, cls) in sorted(items.items())]
    return segmentation_records(work, source="busi", modality="ultrasound", root=root, report=report,
                                licence=LICENCE, total=len(work))
