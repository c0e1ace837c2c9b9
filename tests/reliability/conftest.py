"""Tiny inputs for the reliability tests: a folder source of textured 64x64 images, built in-process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from medfm_hf.benchmark.build import BuildSettings, build_benchmark

PERTS = ["gaussian_noise", "contrast"]


def make_image(i: int, size: int = 64) -> np.ndarray:
    """A textured grey image (never constant), different for every ``i``."""
    rng = np.random.default_rng(100 + i)
    yy, xx = np.mgrid[:size, :size]
    base = 128 + 60 * np.sin(xx / (5 + i)) * np.cos(yy / 7)
    return np.clip(base + rng.integers(0, 20, (size, size)), 0, 255).astype(np.uint8)


def make_mask(i: int, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx - size // 2 + 2 - i) ** 2 + (yy - size // 2) ** 2 < (size // 5) ** 2).astype(np.uint8) * 255


def write_folder(root: Path, n: int = 4, size: int = 64) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), make_image(i, size))
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), make_mask(i, size))
    return root


def settings(src: Path, *, perts=None, levels=(1, 3), fractions="0/0/1", seed=0, extra=None) -> BuildSettings:
    opts = {"modality": "ultrasound", "fractions": fractions, **(extra or {})}
    return BuildSettings(sources=[["folder", str(src), opts]], perturbations=list(perts or PERTS),
                         levels=list(levels), max_size=64, seed=seed)


def build(src: Path, out: Path, **kw) -> dict:
    opts = {k: kw.pop(k) for k in ("overwrite", "num_proc", "refuse_changed", "write_card") if k in kw}
    return build_benchmark(settings(src, **kw), str(out), progress=False, **opts)


def tree_hashes(folder: Path, *, skip_state: bool = True) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (the private .medfm state and the timing report left out)."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), folder)
            if skip_state and (rel.startswith(".medfm") or rel in ("calibration_report.csv", "manifest.json")):
                continue
            out[rel] = hashlib.sha256(Path(dirpath, f).read_bytes()).hexdigest()
    return out


def free_port() -> str:
    """A free TCP port for ``accelerate launch --main_process_port`` (tests may launch in parallel)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture
def src(tmp_path) -> Path:
    return write_folder(tmp_path / "src")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One complete tiny build shared by the read-only tests of a module."""
    root = tmp_path_factory.mktemp("built")
    src = write_folder(root / "src")
    out = root / "bench"
    build(src, out)
    return out
