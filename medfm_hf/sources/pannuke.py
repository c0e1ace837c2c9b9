"""PanNuke nuclei (pathology, H&E, 256x256 at 40x): ``--sources pannuke=PATH``.

Expected layout (the three fold ZIPs unpacked under ``PATH``; the fold number is read from the
``fold<k>`` / ``Fold <k>`` folder names)::

    PATH/Fold 1/images/fold1/images.npy    (N, 256, 256, 3) float64 RGB in 0..255
    PATH/Fold 1/images/fold1/types.npy     (N,) tissue type names
    PATH/Fold 1/masks/fold1/masks.npy      (N, 256, 256, 6) float64 instance maps
    PATH/Fold 2/... PATH/Fold 3/...

Mask channels: 0 neoplastic, 1 inflammatory, 2 connective / soft tissue, 3 dead, 4 epithelial
(each an instance-id map, 0 = no nucleus of that class) and 5 background (1 where no nucleus). The
record's binary mask is "any nucleus": ``masks[..., :5].max(-1) > 0``; the number of instances per
class is in ``meta["nuclei"]``. Images with no nucleus are kept and flagged. Pixel values must be
integers in 0..255 (stored as uint8); other images are skipped.

Splits follow the dataset's three official folds: by default fold 1 = train, fold 2 = validation,
fold 3 = test (the authors' suggested protocol); change it with ``folds=1:test,2:train,3:validation``
(``--sources pannuke=PATH:folds=1=test/2=train/3=validation`` on the command line).
Arrays are memory-mapped, so a fold is never loaded whole.

Licence: CC BY-NC-SA 4.0. Get it from https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke
(Gamper et al., "PanNuke", ECDP 2019 and arXiv:2003.10778).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf.records import SPLITS, Record
from medfm_hf.sources._common import progress, reject_unknown_options, relpath, resolve_splits
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "CC BY-NC-SA 4.0"
CHANNELS = ("neoplastic", "inflammatory", "connective", "dead", "epithelial", "background")
DEFAULT_FOLDS = {1: "train", 2: "validation", 3: "test"}
_FOLD_RE = re.compile(r"fold[ _-]?(\d+)", re.IGNORECASE)


def parse_folds(value: str | dict[int, str] | None) -> dict[int, str]:
    """``"1:train,2:validation,3:test"`` (or ``1=train/2=validation/3=test`` inside ``--sources``) ->
    ``{1: "train", ...}``, checking the split names."""
    if value is None:
        return dict(DEFAULT_FOLDS)
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        try:
            pairs = [(int(k), v.strip()) for k, v in (re.split(r"[:=]", p, maxsplit=1)
                                                      for p in re.split(r"[,/;]", value) if p.strip())]
        except ValueError:
            raise ValueError(f"pannuke: folds={value!r} must look like 1:train,2:validation,3:test") from None
    out = {int(k): v for k, v in pairs}
    bad = [v for v in out.values() if v not in SPLITS]
    if bad:
        raise ValueError(f"pannuke: folds={value!r} uses unknown split(s) {bad}; use {', '.join(SPLITS)}")
    return out


def find_folds(root: Path) -> dict[int, dict[str, Path]]:
    """``{fold: {"images": ..., "masks": ..., "types": ...}}`` for the ``.npy`` files found under ``root``."""
    folds: dict[int, dict[str, Path]] = {}
    for p in sorted(root.rglob("*.npy")):
        if p.stem not in ("images", "masks", "types"):
            continue
        nums = [int(m.group(1)) for part in p.relative_to(root).parts[:-1] if (m := _FOLD_RE.search(part))]
        if not nums:
            continue
        folds.setdefault(nums[-1], {})[p.stem] = p
    return folds


@register_source(
    "pannuke",
    layout="PATH/Fold <k>/images/fold<k>/images.npy (+ types.npy) + PATH/Fold <k>/masks/fold<k>/masks.npy "
    "(6-channel instance maps), k = 1..3",
    licence=LICENCE,
    reference="https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke ; Gamper et al. 2019/2020",
)
def load_pannuke(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    folds: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """PanNuke H&E tiles with a binary "any nucleus" mask from the 6-channel instance maps."""
    reject_unknown_options("pannuke", unknown)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"pannuke: {root} is not a directory")
    fold_split = parse_folds(folds)
    found = find_folds(root)
    if not found:
        raise FileNotFoundError(f"pannuke: no 'Fold <k>/images/fold<k>/images.npy' files under {root}")
    arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    for k, files in sorted(found.items()):
        if k not in fold_split:
            report.skip(f"fold {k}", f"fold {k} is not in folds={fold_split}; add it to use it")
            continue
        if "images" not in files or "masks" not in files:
            missing = "images.npy" if "images" not in files else "masks.npy"
            report.skip(f"fold {k}", f"{missing} is missing for fold {k}")
            continue
        try:
            imgs = np.load(files["images"], mmap_mode="r")
            masks = np.load(files["masks"], mmap_mode="r")
        except (OSError, ValueError) as exc:
            report.skip(f"fold {k}", f"unreadable .npy file ({exc}); re-download the fold")
            continue
        types = None
        if "types" in files:
            try:  # never unpickle downloaded data: an object array is reported, not loaded
                types = np.load(files["types"], allow_pickle=False)
            except (OSError, ValueError) as exc:
                report.flag(f"fold {k}", f"types.npy not readable without pickle ({exc}); tissue types dropped")
        if imgs.ndim != 4 or imgs.shape[-1] != 3 or masks.ndim != 4 or masks.shape[-1] != 6:
            report.skip(f"fold {k}", f"expected images (N,H,W,3) and masks (N,H,W,6), got {imgs.shape} and "
                                     f"{masks.shape}")
            continue
        if imgs.shape[:3] != masks.shape[:3]:
            report.skip(f"fold {k}", f"images {imgs.shape[:3]} and masks {masks.shape[:3]} do not match")
            continue
        if types is not None and len(types) != len(imgs):
            report.flag(f"fold {k}", f"types.npy has {len(types)} entries for {len(imgs)} images; tissue types dropped")
            types = None
        arrays[k] = (imgs, masks, types)
    keys = {f"fold{k}_{i:05d}": k for k, (imgs, _, _) in arrays.items() for i in range(len(imgs))}
    splits = resolve_splits(keys, source="pannuke", seed=seed, report=report, split_file=split_file,
                            official={key: fold_split[k] for key, k in keys.items()})
    records: list[Record] = []
    for k, (imgs, masks, types) in arrays.items():
        for i in progress(range(len(imgs)), desc=f"pannuke fold {k}"):
            key = f"fold{k}_{i:05d}"
            raw = np.asarray(imgs[i])
            if not (np.all(np.isfinite(raw)) and raw.min() >= 0 and raw.max() <= 255
                    and np.array_equal(raw, np.round(raw))):
                report.skip(key, "image values are not integers in 0..255")
                continue
            inst = np.asarray(masks[i])
            mask = inst[..., :5].max(axis=-1) > 0
            counts = {name: int(np.unique(inst[..., c][inst[..., c] > 0]).size) for c, name in enumerate(CHANNELS[:5])}
            if not mask.any():
                report.flag(key, "no nucleus in this tile; kept with bbox None")
            records.append(Record(
                image_id=f"pannuke/{key}", source="pannuke", modality="pathology", task="segmentation",
                image=raw.astype(np.uint8), mask=mask, split=splits[key],
                meta={"image_file": f"{relpath(found[k]['images'], root)}[{i}]", "fold": k,
                      "tissue": None if types is None else str(types[i]), "nuclei": counts,
                      "licence": LICENCE, "notes": []},
            ))
    return records
