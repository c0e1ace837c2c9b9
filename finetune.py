"""Fine-tune a segmenter with one of six strategies on a medfm-robust benchmark, with Accelerate.

    accelerate launch finetune.py --model medsam_lite --strategy lora \\
        --dataset medfm-robust --output runs/lite_lora --epochs 10
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml finetune.py ...
    python finetune.py --model medsam --dry_run          # trainable parameters of every strategy
    accelerate launch finetune.py --task grounding --model medgemma --strategy lora \\
        --dataset medfm-robust --output runs/medgemma_lora --mixed_precision bf16   # VLM grounding (LoRA)

Trains on ``clean/train``, selects the checkpoint on ``clean/validation``, never reads the test split.
The arguments are :class:`medfm_hf.finetune.FinetuneArguments` (``python finetune.py --help``); the output
folder is read back by ``evaluate.py --finetuned DIR``. Documentation: docs/finetune.md.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    task = _task_of(argv)
    if task == "grounding":
        return _main_grounding(argv)
    if task != "segmentation":
        print(f"finetune.py: error: --task must be segmentation or grounding, got {task!r}", file=sys.stderr)
        return 2
    from medfm_hf.finetune.args import parse_finetune_args
    from medfm_hf.finetune.data import FinetuneDataError
    from medfm_hf.finetune.strategies import StrategyError
    from medfm_hf.finetune.trainer import FinetuneError, format_strategy_table, run_finetune, strategy_table

    args = parse_finetune_args(_without_task(argv))
    try:
        if args.dry_run:
            from medfm_hf.finetune.trainer import check_args

            check_args(args)
            print(format_strategy_table(strategy_table(args)))
            return 0
        res = run_finetune(args)
    except (FinetuneError, FinetuneDataError, StrategyError) as exc:
        print(f"finetune.py: error: {exc}", file=sys.stderr)
        return 2
    if res is not None:
        print(f"selected step {res['selected_step']} (validation IoU {res['selected_validation']['iou']:.4f}, "
              f"{res['trainable_params']:,} trainable parameters); output in {args.output}")
    return 0


def _task_of(argv: list[str]) -> str:
    """The value of ``--task`` (default segmentation); the segmentation path is unchanged."""
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return "segmentation"


def _without_task(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--task" and i + 1 < len(argv) and argv[i + 1] == "segmentation":
            skip = True
            continue
        if a == "--task=segmentation":
            continue
        out.append(a)
    return out


def _main_grounding(argv: list[str]) -> int:
    """``--task grounding``: LoRA fine-tuning of a vision-language model (medfm_hf.finetune.vlm_grounding)."""
    from transformers import HfArgumentParser

    from medfm_hf.finetune.args import FinetuneArguments
    from medfm_hf.finetune.data import FinetuneDataError
    from medfm_hf.finetune.trainer import FinetuneError
    from medfm_hf.finetune.vlm_args import VLMGroundingArguments
    from medfm_hf.finetune.vlm_grounding import grounding_dry_run, run_grounding_finetune

    args, vargs = HfArgumentParser((FinetuneArguments, VLMGroundingArguments)).parse_args_into_dataclasses(args=argv)
    try:
        if args.dry_run:
            print(grounding_dry_run(args, vargs))
            return 0
        res = run_grounding_finetune(args, vargs)
    except (FinetuneError, FinetuneDataError) as exc:
        print(f"finetune.py: error: {exc}", file=sys.stderr)
        return 2
    if res is not None:
        v = res["selected_validation"]
        print(f"selected step {res['selected_step']} (validation Acc@0.5 {v['acc@0.5']:.4f}, mean IoU "
              f"{v['mean_iou']:.4f}; {res['trainable_params']:,} trainable parameters); output in {args.output}")
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
