"""``medfm-robust compare-strategies``: train every fine-tuning strategy under one budget and rank them."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "compare-strategies"
HELP = ("Fine-tune one model with every strategy under one budget, evaluate each with the same evaluator, and "
        "write a ranking table and plot (docs/finetune.md).")


def configure(parser: argparse.ArgumentParser) -> None:
    from medfm_hf.finetune.compare import CompareArguments

    helps = {
        "model": "segmenter name (medsam_lite is the CPU-feasible real model)",
        "dataset": "a built benchmark folder (clean/train, clean/validation, the perturbed test configs)",
        "output": "output folder (resumable)",
        "strategies": "'all' or comma-separated strategies",
        "max_steps": "optimizer steps per strategy (the shared budget)",
        "lr_overrides": "per-strategy learning rates, e.g. lora=1e-3,adapter=1e-3",
        "train_options": "JSON of further finetune.py arguments shared by every strategy",
        "configs": "perturbed configs to evaluate: 'all', 'none' or names/globs",
        "attacks": "attacks to evaluate (fgsm,pgd; empty: none)",
        "limit": "evaluate only the first N clean test images",
        "skip_baseline": "do not evaluate the base model (several invocations can share one --output, one "
                         "strategy list each, run in parallel; a last run with every strategy writes the ranking)",
    }
    for f in dataclasses.fields(CompareArguments):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action="store_true", help=helps.get(f.name))
            continue
        kw: dict = {"dest": f.name, "help": helps.get(f.name, f"(default: {f.default})")}
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        kw["type"] = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
        parser.add_argument(flag, **kw)


def run(args: argparse.Namespace) -> int:
    from medfm_hf.finetune.compare import CompareArguments, compare_strategies
    from medfm_hf.reporting.strategies import ranking_markdown

    ca = CompareArguments(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CompareArguments)})
    table = compare_strategies(ca)
    print(ranking_markdown(table))
    print(f"ranking, plot and per-strategy folders in {ca.output}")
    return 0
