"""``medfm-robust evaluate``: the same as ``accelerate launch evaluate.py`` (one process unless launched)."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "evaluate"
HELP = ("Evaluate a segmenter (clean, perturbed, FGSM/PGD) or a VLM (--task vqa|caption|grounding) on a benchmark, "
        "resumable; see evaluate.py.")


def configure(parser: argparse.ArgumentParser) -> None:
    from medfm_hf.commands._fields import add_dataclass_arguments
    from medfm_hf.evaluation.args import EvalArguments

    add_dataclass_arguments(parser, dataclasses.fields(EvalArguments))


def run(args: argparse.Namespace) -> int:
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.report import print_summary
    from medfm_hf.evaluation.runner import evaluate

    ea = EvalArguments(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EvalArguments)})
    res = evaluate(ea)
    if res is not None:
        print_summary(res["summary"])
        print(f"results in {ea.output}")
    return 0
