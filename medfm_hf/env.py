"""What the software environment is: package versions, git revision, hardware, the process rank.

A small module below both the library and the CLI (``medfm-robust info`` and ``run.json`` use it).
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess

PACKAGES = ("numpy", "torch", "torchvision", "datasets", "evaluate", "transformers", "peft", "accelerate",
            "huggingface_hub", "skimage", "cv2", "pydicom")


def versions() -> dict[str, str]:
    """Installed versions of the packages the project depends on (``missing`` where absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception:  # noqa: BLE001 - report, never crash
            out[name] = "missing"
    return out


def git_revision() -> str | None:
    """The git commit of the package's checkout, or ``None`` outside a checkout."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def hardware(accelerator=None) -> dict:
    """Device, process count, platform and GPU name (if any)."""
    import torch

    hw: dict = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    if accelerator is not None:
        hw.update({"device": str(accelerator.device), "num_processes": accelerator.num_processes,
                   "mixed_precision": accelerator.mixed_precision})
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def launched_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process under ``accelerate launch``/``torchrun`` (``(0, 1)`` otherwise)."""
    def _int(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return _int("RANK", 0), max(1, _int("WORLD_SIZE", 1))


def is_main_rank() -> bool:
    """Whether this process is rank 0 (always true without a launcher)."""
    return launched_rank()[0] == 0
