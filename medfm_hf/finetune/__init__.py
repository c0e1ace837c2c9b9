"""Fine-tuning box-prompted segmenters: six strategies (full, decoder_only, decoder_prompt, encoder_partial,
lora, adapter) trained with Accelerate on ``clean/train``, selected on ``clean/validation`` (never test).

* :func:`run_finetune` -- the training run behind ``finetune.py`` / ``medfm-robust finetune``;
* :func:`apply_strategy` -- a strategy's trainable parameters, resolved through ``trainable_groups``;
* :func:`load_finetuned` -- an output folder back as a plain segmenter (``evaluate.py --finetuned DIR``);
* :func:`train_segmenter` -- the small in-memory loop the demo uses.
"""

from __future__ import annotations

from medfm_hf.finetune.args import FinetuneArguments, parse_finetune_args
from medfm_hf.finetune.load import load_finetuned, read_finetuned_config
from medfm_hf.finetune.strategies import STRATEGIES, StrategyOptions, apply_strategy, base_fingerprint
from medfm_hf.finetune.train import TrainResult, segmentation_loss, train_segmenter
from medfm_hf.finetune.trainer import FinetuneError, run_finetune, strategy_table

__all__ = [
    "STRATEGIES",
    "FinetuneArguments",
    "FinetuneError",
    "StrategyOptions",
    "TrainResult",
    "apply_strategy",
    "base_fingerprint",
    "load_finetuned",
    "parse_finetune_args",
    "read_finetuned_config",
    "run_finetune",
    "segmentation_loss",
    "strategy_table",
    "train_segmenter",
]
