"""The clean-record contract shared by every source, the benchmark builder and the evaluator.

A record is one image with its ground truth. Field meanings (see ``ARCHITECTURE.md``):

* ``image_id`` -- stable, ``source/original-stem``; unique within a dataset.
* ``source``, ``modality`` (one of :data:`medfm_hf.MODALITIES`), ``task`` (one of :data:`medfm_hf.TASKS`).
* ``image`` -- ``numpy`` array, ``(H, W)`` grey or ``(H, W, 3)`` RGB, ``uint8`` or ``uint16``.
* ``mask`` -- ``bool`` ``(H, W)`` or ``None``; ``bbox`` -- ``[x0, y0, x1, y1]`` pixels computed from the
  mask (inclusive-exclusive: ``x1 = max column + 1``), ``None`` for an empty or missing mask.
* ``question``, ``options`` (list of strings), ``answer`` (option letter or free text), ``caption``,
  ``target_bbox`` -- the VLM fields, ``None`` where absent.
* ``split`` -- ``train``, ``validation`` or ``test``.
* ``meta`` -- a JSON-serialisable dict of provenance (original file, intensity window, licence, flags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfm_hf import MODALITIES, TASKS

SPLITS: tuple[str, ...] = ("train", "validation", "test")


class RecordError(ValueError):
    """A record breaks the clean-record contract; the message says which field and why."""


def mask_to_bbox(mask: np.ndarray) -> list[int] | None:
    """Tight box ``[x0, y0, x1, y1]`` of a binary mask (``x1``/``y1`` exclusive), ``None`` if empty.

    >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
    >>> mask_to_bbox(m)
    [2, 1, 5, 3]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise RecordError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@dataclass
class Record:
    """One clean image with its ground truth (see the module docstring for each field)."""

    image_id: str
    source: str
    modality: str
    task: str
    image: np.ndarray
    split: str
    mask: np.ndarray | None = None
    bbox: list[int] | None = None
    question: str | None = None
    options: list[str] | None = None
    answer: str | None = None
    caption: str | None = None
    target_bbox: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask is not None:
            self.mask = np.asarray(self.mask).astype(bool)
            if self.bbox is None:
                self.bbox = mask_to_bbox(self.mask)

    def validate(self) -> None:
        """Raise :class:`RecordError` naming the first field that breaks the contract."""
        validate_record(self)

    def to_row(self) -> dict[str, Any]:
        """A row for :func:`datasets.Dataset.from_list` with :data:`CLEAN_FEATURES` (PNG-encoded images)."""
        return {
            "image_id": self.image_id,
            "source": self.source,
            "modality": self.modality,
            "task": self.task,
            "split": self.split,
            "image": {"bytes": encode_png(self.image), "path": None},
            "mask": None
            if self.mask is None
            else {"bytes": encode_png(self.mask.astype(np.uint8) * 255), "path": None},
            "bbox": None if self.bbox is None else [int(v) for v in self.bbox],
            "question": self.question,
            "options": None if self.options is None else list(self.options),
            "answer": self.answer,
            "caption": self.caption,
            "target_bbox": None if self.target_bbox is None else [float(v) for v in self.target_bbox],
            "meta": json.dumps(self.meta, sort_keys=True),
        }


def validate_record(rec: Record) -> None:
    """Check one record against the contract; raise :class:`RecordError` with what is wrong."""
    where = f"record {rec.image_id!r}"
    if not rec.image_id or "/" not in rec.image_id:
        raise RecordError(f"{where}: image_id must look like 'source/stem'")
    if rec.modality not in MODALITIES:
        raise RecordError(f"{where}: unknown modality {rec.modality!r}; expected one of {', '.join(MODALITIES)}")
    if rec.task not in TASKS:
        raise RecordError(f"{where}: unknown task {rec.task!r}; expected one of {', '.join(TASKS)}")
    if rec.split not in SPLITS:
        raise RecordError(f"{where}: unknown split {rec.split!r}; expected one of {', '.join(SPLITS)}")
    img = np.asarray(rec.image)
    if img.dtype not in (np.uint8, np.uint16):
        raise RecordError(f"{where}: image dtype must be uint8 or uint16, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise RecordError(f"{where}: image must be (H, W) or (H, W, 3), got shape {img.shape}")
    if rec.mask is not None:
        if rec.mask.shape != img.shape[:2]:
            raise RecordError(f"{where}: mask shape {rec.mask.shape} differs from image shape {img.shape[:2]}")
        if rec.bbox != mask_to_bbox(rec.mask):
            raise RecordError(f"{where}: bbox {rec.bbox} is not the mask's box {mask_to_bbox(rec.mask)}")
    if rec.task == "segmentation" and rec.mask is None:
        raise RecordError(f"{where}: a segmentation record needs a mask")
    if rec.options is not None and rec.answer is not None and len(rec.answer) == 1:
        letters = [chr(ord("A") + i) for i in range(len(rec.options))]
        if rec.answer not in letters:
            raise RecordError(f"{where}: answer {rec.answer!r} is not one of the option letters {letters}")
    if rec.target_bbox is not None:
        x0, y0, x1, y1 = rec.target_bbox
        h, w = img.shape[:2]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise RecordError(f"{where}: target_bbox {rec.target_bbox} is not inside the {w}x{h} image")


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8/uint16 grey or RGB array (deterministic: no timestamps)."""
    import cv2

    arr = np.ascontiguousarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RecordError(f"could not PNG-encode an array of shape {array.shape} and dtype {array.dtype}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_png` (keeps the bit depth; RGB order)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise RecordError("could not decode image bytes (corrupt or not an image)")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def png_shape(data: bytes) -> tuple[int, ...] | None:
    """``(H, W)`` or ``(H, W, C)`` read from a PNG header without decoding; ``None`` if not a PNG.

    Colour types: 0 grey, 2 RGB, 3 palette (decoded as RGB), 4 grey + alpha, 6 RGBA.
    """
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25])
    if channels is None:
        return None
    return (h, w) if channels == 1 else (h, w, channels)


def clean_features():
    """The :class:`datasets.Features` of a clean record row."""
    from datasets import Features, Image, List, Value

    return Features(
        {
            "image_id": Value("string"),
            "source": Value("string"),
            "modality": Value("string"),
            "task": Value("string"),
            "split": Value("string"),
            "image": Image(),
            "mask": Image(),
            "bbox": List(Value("int32")),
            "question": Value("string"),
            "options": List(Value("string")),
            "answer": Value("string"),
            "caption": Value("string"),
            "target_bbox": List(Value("float32")),
            "meta": Value("string"),
        }
    )


def row_to_record(row: dict[str, Any]) -> Record:
    """Turn a dataset row (decoded or raw) back into a :class:`Record`."""

    def _arr(value: Any) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, dict):
            return decode_png(value["bytes"])
        return np.asarray(value)

    image = _arr(row["image"])
    mask = _arr(row.get("mask"))
    return Record(
        image_id=row["image_id"],
        source=row["source"],
        modality=row["modality"],
        task=row["task"],
        image=image,
        split=row["split"],
        mask=None if mask is None else mask > 127 if mask.dtype == np.uint8 else mask > 0,
        bbox=row.get("bbox"),
        question=row.get("question"),
        options=row.get("options"),
        answer=row.get("answer"),
        caption=row.get("caption"),
        target_bbox=row.get("target_bbox"),
        meta=json.loads(row.get("meta") or "{}"),
    )


def write_rows_parquet(rows: list[dict[str, Any]], path: str, features) -> None:
    """Write dataset rows to one parquet file atomically (temp file + rename), deterministic bytes."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    from medfm_hf.io import atomic_path

    ds = Dataset.from_list(rows, features=features)
    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        with atomic_path(path) as tmp:
            ds.to_parquet(tmp)
    finally:
        if was_enabled:
            enable_progress_bar()


def write_records_parquet(records: list[Record], path: str, *, features=None) -> None:
    """Write records (as :meth:`Record.to_row` rows) with :func:`write_rows_parquet`."""
    write_rows_parquet([r.to_row() for r in records], path, features or clean_features())


def read_records_parquet(path: str) -> list[Record]:
    """Read records written by :func:`write_records_parquet`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [row_to_record(r) for r in table.to_pylist()]


