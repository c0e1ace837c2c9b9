"""Shared test images for the perturbation tests (small, so ~48 perturbations stay fast)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

SIZE = 80


def _resize_u8(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    out = resize(img, (size, size) + img.shape[2:], anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_uint16(img8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A genuinely 16-bit version of an 8-bit image (x * 257 plus random low bits)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 200, img8.shape)
    return np.clip(img8.astype(np.int64) * 257 + low, 0, 65535).astype(np.uint16)


@functools.lru_cache(maxsize=1)
def demo_test_records():
    """The embedded demo test split (cached for the session)."""
    from medfm_hf.sources.demo import load_demo

    return load_demo(split="test")


@functools.cache
def grey_image() -> np.ndarray:
    return _resize_u8(data.camera())


@functools.cache
def rgb_image() -> np.ndarray:
    return _resize_u8(data.immunohistochemistry())


@functools.cache
def modality_image(modality: str, colour: bool) -> np.ndarray:
    """A demo image of ``modality`` at SIZE x SIZE (grey or RGB as requested)."""
    for rec in demo_test_records():
        if rec.modality == modality:
            img = rec.image
            break
    else:  # pragma: no cover - the demo set covers every modality
        img = rgb_image() if colour else grey_image()
    if colour and img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if not colour and img.ndim == 3:
        img = np.rint(img @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return _resize_u8(img)


def blob_image(size: int = SIZE) -> np.ndarray:
    """Smooth grey image with two bright blobs (a threshold at 128 gives a clean mask)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    a = np.exp(-(((yy - 0.35 * size) ** 2 + (xx - 0.4 * size) ** 2) / (2 * (0.15 * size) ** 2)))
    b = np.exp(-(((yy - 0.65 * size) ** 2 + (xx - 0.68 * size) ** 2) / (2 * (0.12 * size) ** 2)))
    return np.clip(np.rint(235 * np.maximum(a, b) + 10), 0, 255).astype(np.uint8)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
