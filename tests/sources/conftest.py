"""Fixture helpers for the source-adapter tests: tiny images written in-process (nothing committed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest


def _write(path: Path, arr: np.ndarray, *, quality: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    ok, buf = cv2.imencode(path.suffix, a, params)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def _rgb(rng: np.random.Generator, h: int = 40, w: int = 48) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _grey(rng: np.random.Generator, h: int = 40, w: int = 48, dtype=np.uint8) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max + 1, (h, w), dtype=dtype)


def _rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def fx() -> SimpleNamespace:
    """Helpers: write(path, array), rgb(rng), grey(rng), rect(...), truncate(path)."""
    return SimpleNamespace(write=_write, rgb=_rgb, grey=_grey, rect=_rect, truncate=_truncate)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
