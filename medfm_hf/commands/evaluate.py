"""``medfm-robust evaluate``: the same as ``accelerate launch evaluate.py`` (one process unless launched)."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "evaluate"
HELP = ("Evaluate a segmenter (clean, perturbed, FGSM/PGD) or a VLM (--task vqa|caption|grounding) on a benchmark, "
        "resumable; see evaluate.py.")


def configure(parser: argparse.ArgumentParser) -> None:
    from medfm_hf.evaluation.args import EvalArguments

    for f in dataclasses.fields(EvalArguments):
        flags = ["--" + f.name.replace("_", "-")] + (["--" + f.name] if "_" in f.name else [])
        help_ = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            parser.add_argument(*flags, dest=f.name, action="store_true", help=help_)
            continue
        kw: dict = {"dest": f.name, "help": help_}
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        if f.type in (int, "int", "int | None"):
            kw["type"] = int
        parser.add_argument(*flags, **kw)


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
