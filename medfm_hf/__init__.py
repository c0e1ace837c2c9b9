"""medfm_hf: robustness benchmark for medical foundation models on the Hugging Face stack."""

from __future__ import annotations

__version__ = "0.1.0"

MODALITIES: tuple[str, ...] = (
    "ct",
    "mri",
    "xray",
    "ultrasound",
    "dermoscopy",
    "endoscopy",
    "fundus",
    "oct",
    "pathology",
    "angiography",
)
TASKS: tuple[str, ...] = ("segmentation", "vqa", "caption", "grounding")

__all__ = ["MODALITIES", "TASKS", "__version__"]
