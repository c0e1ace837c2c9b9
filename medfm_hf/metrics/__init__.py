"""Metric implementations behind the ``evaluate`` modules in ``metrics/`` (importable without ``evaluate``).

=========================  ======================================================  =======================
function                   what                                                    ``evaluate`` module
=========================  ======================================================  =======================
:func:`segmentation_scores` per-image IoU / Dice at 0.5, both-empty = ``empty_score`` ``metrics/iou``, ``metrics/dice``
:func:`grounding_scores`   Acc@IoU 0.3/0.5/0.75 and mean IoU of parsed VLM boxes     ``metrics/grounding_accuracy``
:func:`bleu_scores`        BLEU-1..4 (COCO / ``pycocoevalcap``)                      ``metrics/bleu``
:func:`cider_scores`       CIDEr-D (COCO / ``pycocoevalcap``)                        ``metrics/cider``
:func:`vqa_scores`         multiple-choice and open VQA accuracy                    ``metrics/vqa_accuracy``
:func:`robustness_drop`    clean vs perturbed drop, per level and overall            ``metrics/robustness_drop``
=========================  ======================================================  =======================
"""

from __future__ import annotations

from medfm_hf.metrics.boxes import BOX_FORMATS, ParsedBox, box_iou, convert_box, parse_box
from medfm_hf.metrics.captioning import (
    TOKENIZERS,
    bleu_from_tokens,
    bleu_scores,
    cider_d_from_tokens,
    cider_scores,
    ptb_available,
    ptb_tokenize,
    python_tokenize,
    tokenize_captions,
)
from medfm_hf.metrics.grounding import DEFAULT_IOU_THRESHOLDS, grounding_scores
from medfm_hf.metrics.robustness import robustness_drop
from medfm_hf.metrics.segmentation import binarize_mask, dice_per_image, iou_per_image, segmentation_scores
from medfm_hf.metrics.vqa import normalize_answer, parse_choice, vqa_scores

__all__ = [
    "BOX_FORMATS",
    "DEFAULT_IOU_THRESHOLDS",
    "TOKENIZERS",
    "ParsedBox",
    "binarize_mask",
    "bleu_from_tokens",
    "bleu_scores",
    "box_iou",
    "cider_d_from_tokens",
    "cider_scores",
    "convert_box",
    "dice_per_image",
    "grounding_scores",
    "iou_per_image",
    "normalize_answer",
    "parse_box",
    "parse_choice",
    "ptb_available",
    "ptb_tokenize",
    "python_tokenize",
    "robustness_drop",
    "segmentation_scores",
    "tokenize_captions",
    "vqa_scores",
]
