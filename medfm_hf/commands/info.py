"""``medfm-robust info``: versions and what this installation provides."""

from __future__ import annotations

import argparse
import importlib
import platform

NAME = "info"
HELP = "Show package versions, modalities and the registered components."

_PACKAGES = ("numpy", "torch", "torchvision", "datasets", "evaluate", "transformers", "peft", "accelerate",
             "huggingface_hub", "skimage", "cv2", "pydicom")


def configure(parser: argparse.ArgumentParser) -> None:
    del parser


def versions() -> dict[str, str]:
    """Installed versions of the packages the project depends on (``missing`` where absent)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception:  # noqa: BLE001 - report, never crash
            out[name] = "missing"
    return out


def run(args: argparse.Namespace) -> int:
    from medfm_hf import MODALITIES, TASKS, __version__

    print(f"medfm_hf {__version__}")
    for name, ver in versions().items():
        print(f"  {name:16s} {ver}")
    print(f"modalities: {', '.join(MODALITIES)}")
    print(f"tasks: {', '.join(TASKS)}")
    return 0
