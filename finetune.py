"""Fine-tune a segmenter with one of six strategies on a medfm-robust benchmark, with Accelerate.

    accelerate launch finetune.py --model medsam_lite --strategy lora \\
        --dataset medfm-robust --output runs/lite_lora --epochs 10
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml finetune.py ...
    python finetune.py --model medsam --dry_run          # trainable parameters of every strategy

Trains on ``clean/train``, selects the checkpoint on ``clean/validation``, never reads the test split.
The arguments are :class:`medfm_hf.finetune.FinetuneArguments` (``python finetune.py --help``); the output
folder is read back by ``evaluate.py --finetuned DIR``. Documentation: docs/finetune.md.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from medfm_hf.finetune.args import parse_finetune_args
    from medfm_hf.finetune.data import FinetuneDataError
    from medfm_hf.finetune.strategies import StrategyError
    from medfm_hf.finetune.trainer import FinetuneError, format_strategy_table, run_finetune, strategy_table

    args = parse_finetune_args(argv)
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


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
