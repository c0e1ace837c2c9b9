"""Shared helpers for the source adapters: image reading, mask binarisation, pairing, splits.

Nothing here knows about a particular dataset. Every function either returns a value or raises an
exception whose message says what was wrong with which file and what to do; adapters turn those
exceptions into :class:`~medfm_hf.sources.base.SourceReport` skips, so a bad file never crashes a
build halfway and is never dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfm_hf import MODALITIES
from medfm_hf.records import SPLITS
from medfm_hf.sources.base import SourceReport

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LOSSY_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg")
#: Modalities stored as single-channel images (the others are RGB).
GREY_MODALITIES: frozenset[str] = frozenset({"ct", "mri", "xray", "ultrasound", "oct", "angiography"})
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
MASK_THRESHOLD = 127


class ImageReadError(ValueError):
    """An image file could not be read (missing, unreadable, truncated or of an unsupported kind)."""


class MaskError(ValueError):
    """A mask file is not a usable binary mask (e.g. a multi-class label map)."""


# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


def check_modality(modality: str | None, *, source: str) -> str:
    """Return ``modality`` if it is one of :data:`medfm_hf.MODALITIES`, else raise a clear ``ValueError``."""
    if not modality:
        raise ValueError(
            f"source {source!r} needs a modality, e.g. --sources {source}=PATH:dermoscopy; "
            f"one of: {', '.join(MODALITIES)}"
        )
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r} for source {source!r}; expected one of: {', '.join(MODALITIES)}")
    return modality


def as_int(value: Any, name: str) -> int:
    """Coerce a CLI option (often a string) to ``int`` with a clear error."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r} must be an integer") from None


def parse_fractions(value: str | Iterable[float] | None) -> tuple[float, float, float]:
    """Parse ``"0.7,0.1,0.2"`` or ``"0.7/0.1/0.2"`` (train, validation, test) and check it sums to 1."""
    if value is None:
        return DEFAULT_FRACTIONS
    parts = re.split(r"[,/]", value) if isinstance(value, str) else list(value)
    try:
        fr = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"fractions {value!r} must be three numbers 'train,validation,test', e.g. 0.7,0.1,0.2") from None
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions {value!r} must be three non-negative numbers summing to 1 (train,validation,test)")
    return fr  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Image reading
# --------------------------------------------------------------------------------------------------


def _png_is_16bit_colour(data: bytes) -> bool:
    # PNG IHDR: 8-byte signature, 4 length, 4 "IHDR", 4 width, 4 height, 1 bit depth, 1 colour type.
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 26 and data[24] == 16 and data[25] in (2, 6)


def _tiff_bits(im: Any) -> int:
    bits = getattr(im, "tag_v2", {}).get(258, 8)  # TIFF tag BitsPerSample
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _decode_with_cv2(data: bytes, name: str) -> np.ndarray:
    import cv2

    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format)")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def decode_image(data: bytes, name: str, notes: list[str] | None = None) -> np.ndarray:
    """Decode image bytes to ``uint8``/``uint16`` ``(H, W)`` or ``(H, W, 3)`` without losing bit depth.

    Conversions (each appended to ``notes`` when given): RGBA/LA -> alpha dropped, palette -> RGB
    (or grey when the palette is grey), 1-bit -> 0/255, CMYK/YCbCr -> RGB. 16-bit grey and 16-bit
    colour PNGs stay ``uint16``.

    Raises
    ------
    ImageReadError
        For truncated, corrupt or unsupported data (float images, more than 16 bits).
    """
    from PIL import Image, UnidentifiedImageError

    notes = notes if notes is not None else []
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes); re-download or remove it")
    if _png_is_16bit_colour(data):
        arr = _decode_with_cv2(data, name)
        notes.append("16-bit colour PNG kept as uint16")
        return arr
    try:
        im = Image.open(io.BytesIO(data))
        if im.format == "TIFF" and im.mode in ("RGB", "RGBA") and _tiff_bits(im) > 8:
            # Pillow reads 16-bit colour TIFF as 8-bit RGB (lossy); OpenCV keeps the 16 bits.
            notes.append("16-bit colour TIFF kept as uint16")
            return _decode_with_cv2(data, name)
        im.load()
    except UnidentifiedImageError:
        # Pillow cannot read some valid files (e.g. 16-bit colour TIFF); OpenCV can.
        return _decode_with_cv2(data, name)
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError...
        raise ImageReadError(f"{name}: unreadable or truncated image ({exc}); re-download or remove it") from None
    mode = im.mode
    was_palette = mode == "P"
    if was_palette:
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        palette_note = len(notes)
        notes.append("palette image converted to RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGB" if mode != "LA" else "L")
        notes.append(f"{mode} alpha channel dropped")
    elif mode == "1":
        im = im.convert("L")
        notes.append("1-bit image stored as 0/255")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
        notes.append(f"{mode} converted to RGB")
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        arr = arr.astype(np.uint16)
    elif im.mode == "I":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(f"{name}: 32-bit integer image with values outside 0..65535; convert it to 16 bit")
        arr = arr.astype(np.uint16)
    elif im.mode == "F":
        raise ImageReadError(f"{name}: floating-point image; convert it to 8- or 16-bit integers first")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{name}: unsupported pixel type {arr.dtype} (mode {im.mode})")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if was_palette and arr.ndim == 3 and _channels_equal(arr):
        arr = arr[:, :, 0]
        notes[palette_note] = "grey palette image converted to grey"
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike[str], notes: list[str] | None = None) -> np.ndarray:
    """Read an image file with :func:`decode_image`; a missing file is an :class:`ImageReadError` too."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot open ({exc.strerror or exc})") from None
    return decode_image(data, str(p), notes)


def _channels_equal(arr: np.ndarray) -> bool:
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))


def conform_channels(image: np.ndarray, modality: str, notes: list[str] | None = None) -> np.ndarray:
    """Lossless channel layout per modality: grey modalities drop identical RGB channels; colour
    modalities get grey images replicated to RGB. Anything else is returned unchanged."""
    notes = notes if notes is not None else []
    if modality in GREY_MODALITIES and image.ndim == 3 and _channels_equal(image):
        notes.append("identical RGB channels stored as grey")
        return np.ascontiguousarray(image[:, :, 0])
    if modality not in GREY_MODALITIES and image.ndim == 2:
        notes.append("grey image replicated to RGB")
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    return image


# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------


def binarise_mask(
    arr: np.ndarray, *, lossy: bool, name: str = "mask", threshold: int = MASK_THRESHOLD
) -> tuple[np.ndarray, str | None]:
    """Turn a mask image into a ``bool`` array.

    Parameters
    ----------
    arr
        Mask pixels (grey or colour, uint8/uint16). Colour masks use the maximum over channels.
    lossy
        ``True`` for JPEG masks: compression noise is expected, so pixels ``> threshold`` are foreground.
    threshold
        8-bit threshold (scaled by 257 for 16-bit masks).

    Returns
    -------
    mask, problem
        ``problem`` is ``None`` for a clean binary mask, else a sentence to record as a flag
        (a non-binary lossless mask was thresholded, or the mask is entirely foreground).

    Raises
    ------
    MaskError
        When the mask looks like a multi-class label map (more than two values, all at or below the
        threshold): thresholding would silently erase it.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a.max(axis=2)
    if a.ndim != 2:
        raise MaskError(f"{name}: mask must be 2-D, got shape {np.asarray(arr).shape}")
    thr = threshold * 257 if a.dtype == np.uint16 else threshold
    values = np.unique(a)
    problem: str | None = None
    if values.size <= 2 and (values.size == 1 or values[0] == 0):
        mask = a > 0
        if values.size == 1 and values[0] != 0:
            problem = f"mask is entirely foreground (single value {int(values[0])})"
    elif lossy:
        mask = a > thr
    elif values.max() <= thr:
        shown = ", ".join(str(int(v)) for v in values[:8])
        raise MaskError(
            f"{name}: not a binary mask: values [{shown}{', ...' if values.size > 8 else ''}] look like a "
            "label map; binarise it first or use the dataset's adapter"
        )
    else:
        mask = a > thr
        problem = f"non-binary mask ({values.size} distinct values) thresholded at {threshold}"
    return mask, problem


def read_mask(path: str | os.PathLike[str], *, threshold: int = MASK_THRESHOLD) -> tuple[np.ndarray, str | None]:
    """Read and binarise one mask file (JPEG masks are thresholded); see :func:`binarise_mask`."""
    arr = read_image(path)
    lossy = Path(path).suffix.lower() in LOSSY_EXTENSIONS
    return binarise_mask(arr, lossy=lossy, name=str(path), threshold=threshold)


def union_masks(
    paths: list[Path], shape: tuple[int, int], *, threshold: int = MASK_THRESHOLD
) -> tuple[np.ndarray, list[str]]:
    """Read and OR several mask files of one image; every mask must have the image's ``shape``.

    Returns the union and the list of problems to flag. Raises :class:`ImageReadError`,
    :class:`MaskError` or ``ValueError`` (size mismatch) with the offending file in the message.
    """
    out = np.zeros(shape, bool)
    problems: list[str] = []
    for p in paths:
        m, problem = read_mask(p, threshold=threshold)
        if m.shape != tuple(shape):
            raise ValueError(f"mask {p.name} is {m.shape[1]}x{m.shape[0]} but its image is {shape[1]}x{shape[0]} (WxH)")
        if problem:
            problems.append(f"{p.name}: {problem}")
        out |= m
    return out, problems


# --------------------------------------------------------------------------------------------------
# Pairing images and masks by stem
# --------------------------------------------------------------------------------------------------


@dataclass
class Pairing:
    """Result of :func:`pair_by_stem`: image stem -> (image file, mask files), plus the leftovers."""

    pairs: dict[str, tuple[Path, list[Path]]] = field(default_factory=dict)
    missing_mask: list[Path] = field(default_factory=list)
    orphan_masks: list[Path] = field(default_factory=list)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    other_files: list[Path] = field(default_factory=list)

    def report_to(self, report: SourceReport, *, expected: str, root: Path | None = None) -> None:
        """Record every leftover as a skip with its reason (paths relative to ``root`` when given)."""

        def name(f: Path) -> str:
            return relpath(f, root) if root is not None else str(f)

        for stem, files in sorted(self.duplicates.items()):
            for f in files:
                report.skip(name(f), f"duplicate stem {stem!r} ({', '.join(x.name for x in files)}); rename or remove one")
        for f in self.missing_mask:
            report.skip(name(f), f"image without a mask (looked for {expected})")
        for f in self.orphan_masks:
            report.skip(name(f), "mask without an image of the same stem")
        for f in self.other_files:
            report.skip(name(f), f"not an image file ({f.suffix or 'no extension'}); ignored")


def list_files(folder: Path, *, recursive: bool = False, report: SourceReport | None = None,
               root: Path | None = None) -> list[Path]:
    """Regular, non-hidden files of ``folder`` in sorted order.

    With ``report``, every other non-hidden entry is reported as skipped with its reason (a sub-folder
    when not ``recursive``, a broken or looping symbolic link, a device or socket), named relative to
    ``root`` (default ``folder``): nothing is dropped silently.
    """
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = []
    for p in it:
        if p.name.startswith("."):
            continue
        if p.is_file():
            files.append(p)
            continue
        if report is None or (recursive and p.is_dir()):
            continue
        item = relpath(p, root or folder)
        if p.is_symlink() and not p.exists():
            report.skip(item, "symbolic link that leads nowhere (broken, or a loop); point it at an image")
        elif p.is_dir():
            report.skip(item, "sub-folder: only the files directly in the folder are read; move its images up")
        else:
            report.skip(item, "not a regular file; ignored")
    return sorted(files)


_MULTI_RE = re.compile(r"^(?P<base>.+)[_ -]\(?\d+\)?$")


def pair_by_stem(
    image_files: Iterable[Path], mask_files: Iterable[Path], *, mask_suffix: str = ""
) -> Pairing:
    """Pair images with masks named ``<stem><suffix>`` or, for several masks of one image,
    ``<stem><suffix>_<k>`` / ``<stem><suffix><k>`` (BUSI: ``x_mask.png``, ``x_mask_1.png``).

    An exact name always wins over the multi-mask reading, so an image ``a_1`` keeps its own mask.
    Images sharing a stem (``a.png`` + ``a.jpg``) are duplicates and are not paired.
    """
    res = Pairing()
    images: dict[str, list[Path]] = {}
    for f in image_files:
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            res.other_files.append(f)
            continue
        images.setdefault(f.stem, []).append(f)
    for stem, files in images.items():
        if len(files) > 1:
            res.duplicates[stem] = files
    unique = {s: fs[0] for s, fs in images.items() if len(fs) == 1}
    found: dict[str, list[Path]] = {s: [] for s in unique}
    for m in mask_files:
        if m.suffix.lower() not in IMAGE_EXTENSIONS:
            res.other_files.append(m)
            continue
        stem = m.stem
        if mask_suffix:
            if mask_suffix not in stem:
                res.orphan_masks.append(m)
                continue
            head, _, tail = stem.rpartition(mask_suffix)
            if head in found and (tail == "" or re.fullmatch(r"[_ -]?\(?\d+\)?", tail)):
                found[head].append(m)
                continue
            if head in images:  # belongs to a duplicate image: reported with it
                continue
            res.orphan_masks.append(m)
            continue
        if stem in found:
            found[stem].append(m)
            continue
        match = _MULTI_RE.match(stem)
        if match and match.group("base") in found:
            found[match.group("base")].append(m)
        elif stem not in images:
            res.orphan_masks.append(m)
    for stem, img in sorted(unique.items()):
        masks = sorted(found[stem])
        if masks:
            res.pairs[stem] = (img, masks)
        else:
            res.missing_mask.append(img)
    return res


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def _hash_unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def _split_by_fraction(u: float, fractions: tuple[float, float, float]) -> str:
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "validation"
    return "test"


def draw_split(
    keys: Iterable[str], seed: int, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Seeded split of ``keys`` into train/validation/test with the given fractions.

    The keys are sorted first, so the result depends only on the set of keys and the seed; the
    counts are ``round(n * f)`` for test and validation, the rest is train.
    """
    ks = sorted(set(keys))
    n = len(ks)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = int(round(n * fractions[2]))
    n_val = int(round(n * fractions[1]))
    if n_test + n_val > n:
        n_val = max(0, n - n_test)
    out: dict[str, str] = {}
    for rank, idx in enumerate(order):
        out[ks[idx]] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
    return out


def read_split_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split file (``{"version": 1, "sources": {name: {...}}}``); a missing file is empty."""
    p = Path(path)
    if not p.exists():
        return {"version": 1, "sources": {}}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"split file {p} is not valid JSON ({exc}); fix or delete it to draw a new split") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise ValueError(f"split file {p} has no 'sources' table; it was not written by medfm_hf")
    return data


def write_split_file(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write the split file atomically (temporary file + rename), with sorted keys."""
    from medfm_hf.io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def resolve_splits(
    keys: Iterable[str],
    *,
    source: str,
    seed: int,
    report: SourceReport,
    split_file: str | os.PathLike[str] | None = None,
    official: Mapping[str, str] | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """Assign each group key (an image, a patient, a volume) to a split, reusing ``split_file``.

    Parameters
    ----------
    keys
        Group keys: every record of a key goes to the same split (no patient leakage).
    official
        The dataset's own split per key where it has one. Keys officially in ``test`` or
        ``validation`` keep it; when no key is officially ``validation``, the official ``train``
        keys are divided into train/validation with the seeded draw (``fractions`` renormalised).
        Keys missing from ``official`` get the seeded three-way draw.
    split_file
        JSON file recording the assignment. If it has an entry for ``source``, that entry is reused
        as is (never re-drawn, whatever the seed); keys not in it are assigned by a per-key hash
        draw, added to the file and flagged. Without an entry, one is drawn and written atomically.
    """
    keys = sorted(set(keys))
    data: dict[str, Any] | None = None
    if split_file is not None:
        data = read_split_file(split_file)
        entry = data["sources"].get(source)
        if entry is not None:
            assigned: dict[str, str] = dict(entry.get("assignments", {}))
            bad = {k: v for k, v in assigned.items() if v not in SPLITS}
            if bad:
                raise ValueError(f"split file {split_file}: unknown split names {sorted(set(bad.values()))} for {source}")
            if entry.get("seed") != seed:
                logger.info("%s: reusing the recorded split (seed %s), not drawing one with seed %s",
                            source, entry.get("seed"), seed)
            new = [k for k in keys if k not in assigned]
            fr = tuple(entry.get("fractions", fractions))
            for k in new:
                split = (official or {}).get(k) or _split_by_fraction(_hash_unit(int(entry.get("seed", seed)), k), fr)
                assigned[k] = split
                report.flag(k, f"not in split file {split_file}; assigned to {split} and added to the file")
            if new:
                entry["assignments"] = dict(sorted(assigned.items()))
                write_split_file(split_file, data)
            return {k: assigned[k] for k in keys}

    official = dict(official or {})
    out: dict[str, str] = {}
    unofficial = [k for k in keys if k not in official]
    out.update(draw_split(unofficial, seed, fractions))
    has_val = any(v == "validation" for v in official.values())
    off_train = [k for k in keys if official.get(k) == "train"]
    if official and not has_val and off_train:
        val_share = fractions[1] / max(fractions[0] + fractions[1], 1e-12)
        out.update(draw_split(off_train, seed, (1.0 - val_share, val_share, 0.0)))
    for k in keys:
        if k in official and official[k] != "train":
            out[k] = official[k]
        elif k in official and has_val:
            out[k] = "train"
    if data is not None and split_file is not None:
        data["sources"][source] = {
            "seed": seed,
            "fractions": list(fractions),
            "official": bool(official),
            "assignments": dict(sorted(out.items())),
        }
        write_split_file(split_file, data)
    return out


def progress(iterable: Iterable[Any], *, desc: str, total: int | None = None) -> Iterable[Any]:
    """A ``tqdm`` progress bar that stays quiet for short loops and non-interactive runs."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, disable=None, mininterval=1.0)


# --------------------------------------------------------------------------------------------------
# One image + its mask files -> arrays, with every problem reported
# --------------------------------------------------------------------------------------------------


def load_pair(
    image_path: Path,
    mask_paths: list[Path],
    *,
    modality: str,
    report: SourceReport,
    item: str,
    threshold: int = MASK_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Read an image and the union of its masks; ``None`` (with a recorded skip) when unusable.

    Empty masks and thresholded non-binary masks are kept and flagged. Returns
    ``(image, mask, notes)`` where ``notes`` lists the lossless conversions applied.
    """
    notes: list[str] = []
    try:
        image = read_image(image_path, notes)
        image = conform_channels(image, modality, notes)
        mask, problems = union_masks(mask_paths, image.shape[:2], threshold=threshold)
    except (ImageReadError, MaskError, ValueError) as exc:
        report.skip(item, str(exc))
        return None
    for problem in problems:
        report.flag(item, problem)
    if len(mask_paths) > 1:
        notes.append(f"{len(mask_paths)} mask files unioned")
    if not mask.any():
        report.flag(item, "empty mask (no foreground pixel); kept with bbox None")
    return image, mask, notes


def relpath(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (for meta and split keys)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def segmentation_records(
    items: Iterable[tuple[str, Path, list[Path], str, dict[str, Any]]],
    *,
    source: str,
    modality: str,
    root: Path,
    report: SourceReport,
    licence: str,
    threshold: int = MASK_THRESHOLD,
    total: int | None = None,
) -> list[Any]:
    """Records for ``(stem, image file, mask files, split, extra meta)`` items; bad items are reported.

    Each record is ``<source>/<stem>``, task ``segmentation``, with the union of its masks.
    """
    from medfm_hf.records import Record

    out: list[Record] = []
    for stem, img_path, mask_paths, split, extra in progress(items, desc=source, total=total):
        loaded = load_pair(img_path, mask_paths, modality=modality, report=report, item=relpath(img_path, root),
                           threshold=threshold)
        if loaded is None:
            continue
        image, mask, notes = loaded
        meta = {"image_file": relpath(img_path, root), "mask_files": [relpath(m, root) for m in mask_paths],
                "notes": notes, "licence": licence, **extra}
        out.append(Record(image_id=f"{source}/{stem}", source=source, modality=modality, task="segmentation",
                          image=image, mask=mask, split=split, meta=meta))
    return out


def reject_unknown_options(source: str, unknown: Mapping[str, Any]) -> None:
    """Raise a clear error for options an adapter does not take (a typo must not be ignored)."""
    if unknown:
        raise ValueError(f"source {source!r}: unknown option(s) {sorted(unknown)}; see `medfm-robust sources {source}`")


def find_dir(root: Path, names: Iterable[str], *, depth: int = 2) -> Path | None:
    """First directory (breadth-first, sorted, up to ``depth`` levels below ``root``, ``root`` included)
    whose name matches one of ``names`` case-insensitively."""
    wanted = {n.lower() for n in names}
    level = [root]
    for _ in range(depth + 1):
        for d in level:
            if d.name.lower() in wanted:
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    return None
