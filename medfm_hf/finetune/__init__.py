"""Fine-tuning box-prompted segmenters (the reference recipe's loss; clean/train to fit, clean/validation to select)."""

from __future__ import annotations

from medfm_hf.finetune.train import TrainResult, segmentation_loss, train_segmenter

__all__ = ["TrainResult", "segmentation_loss", "train_segmenter"]
