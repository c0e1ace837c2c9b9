"""``medfm-robust finetune``: the same as ``accelerate launch finetune.py`` (one process unless launched)."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "finetune"
HELP = ("Fine-tune a segmenter (full, decoder_only, decoder_prompt, encoder_partial, lora, adapter) or, with "
        "--task grounding, a vision-language model with LoRA; see finetune.py.")


def configure(parser: argparse.ArgumentParser) -> None:
    from medfm_hf.commands._fields import add_dataclass_arguments
    from medfm_hf.finetune.args import FinetuneArguments
    from medfm_hf.finetune.vlm_args import VLMGroundingArguments

    add_dataclass_arguments(parser, [*dataclasses.fields(FinetuneArguments), *dataclasses.fields(VLMGroundingArguments)])


def run(args: argparse.Namespace) -> int:
    from medfm_hf.finetune.args import FinetuneArguments
    from medfm_hf.finetune.trainer import check_args, format_strategy_table, run_finetune, strategy_table

    fa = FinetuneArguments(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneArguments)})
    if getattr(args, "task", "segmentation") != "segmentation":
        return _run_grounding(fa, args)
    if fa.dry_run:
        check_args(fa)
        print(format_strategy_table(strategy_table(fa)))
        return 0
    res = run_finetune(fa)
    if res is not None:
        print(f"selected step {res['selected_step']} (validation IoU {res['selected_validation']['iou']:.4f}, "
              f"{res['trainable_params']:,} trainable parameters); output in {fa.output}")
    return 0


def _run_grounding(fa, args: argparse.Namespace) -> int:
    """``--task grounding``: LoRA fine-tuning of a vision-language model (medfm_hf.finetune.vlm_grounding)."""
    from medfm_hf.finetune.vlm_args import VLMGroundingArguments
    from medfm_hf.finetune.vlm_grounding import grounding_dry_run, run_grounding_finetune

    va = VLMGroundingArguments(**{f.name: getattr(args, f.name) for f in dataclasses.fields(VLMGroundingArguments)})
    if fa.dry_run:
        print(grounding_dry_run(fa, va))
        return 0
    res = run_grounding_finetune(fa, va)
    if res is not None:
        v = res["selected_validation"]
        print(f"selected step {res['selected_step']} (validation Acc@0.5 {v['acc@0.5']:.4f}); output in {fa.output}")
    return 0
