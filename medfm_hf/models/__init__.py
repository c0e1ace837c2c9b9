"""Model adapters: box-prompted segmenters (MedSAM, LiteMedSAM, SAM-Med2D, SAM, GrabCut) behind one registry.

>>> from medfm_hf.models import create_segmenter, list_segmenters
>>> list_segmenters()
['grabcut', 'medsam', 'medsam_lite', 'sam', 'sam_med2d']
"""

from __future__ import annotations

from medfm_hf.models.base import (
    CheckpointError,
    Segmenter,
    SegmenterInputError,
    to_model_input,
)
from medfm_hf.models.registry import create_segmenter, list_segmenters, register_segmenter, segmenter_spec

__all__ = [
    "CheckpointError",
    "Segmenter",
    "SegmenterInputError",
    "create_segmenter",
    "list_segmenters",
    "register_segmenter",
    "segmenter_spec",
    "to_model_input",
]
