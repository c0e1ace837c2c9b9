"""Arguments of the evaluator, as a dataclass parsed by :class:`transformers.HfArgumentParser`.

They are validated in one place, :func:`medfm_hf.evaluation.plan.make_plan`, which turns them into a typed
:class:`~medfm_hf.evaluation.plan.EvalPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalArguments:
    """What ``accelerate launch evaluate.py`` and ``medfm-robust evaluate`` take."""

    model: str = field(metadata={"help": "segmenter (medsam, sam_med2d, sam, grabcut) or, with a VLM --task, a "
                                         "vision-language model family (medgemma, llava_med, hf, openai, gemini)"})
    dataset: str = field(metadata={"help": "benchmark folder (medfm-robust build) or Hub dataset repo id"})
    output: str = field(metadata={"help": "results folder (resumable: a rerun skips finished batches)"})
    checkpoint: str | None = field(default=None, metadata={"help": "weights: local file/folder or Hub id"})
    finetuned: str | None = field(default=None, metadata={"help": "output folder of finetune.py (any strategy); "
                                                                  "--checkpoint then overrides its base weights"})
    configs: str = field(default="all", metadata={"help": "'all', 'none', or comma-separated config names/globs"})
    attacks: str = field(default="", metadata={"help": "comma-separated: fgsm,pgd (empty: no attacks)"})
    levels: str = field(default="1-5", metadata={"help": "severity levels of perturbations and attacks"})
    batch_size: int = field(default=8, metadata={"help": "images per forward pass"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N clean test images"})
    seed: int = field(default=0, metadata={"help": "seed of the PGD random starts"})
    step_rule: str = field(default="standard", metadata={"help": "PGD step: standard (2.5 eps/steps) or reference (eps/steps)"})
    model_kwargs: str = field(default="{}", metadata={"help": "JSON options of the model family, e.g. '{\"size\": \"tiny\"}'"})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16 (GPU only; honoured by Accelerate)"})
    push_to_hub: str | None = field(default=None, metadata={"help": "ORG/NAME: upload the results folder as a dataset"})
    no_progress: bool = field(default=False, metadata={"help": "hide the progress bar"})
    overwrite: bool = field(default=False, metadata={"help": "start afresh when --output holds a run with other "
                                                             "settings or inputs (deletes only that run's files)"})
    task: str = field(default="segmentation", metadata={"help": "segmentation, vqa, caption or grounding"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "VLM tasks: generation cap (default: the "
                                                                       "task's, 16 vqa / 64 caption / 48 grounding)"})
    vlm_cache: str = field(default="auto", metadata={"help": "VLM tasks: response cache file; 'auto' = "
                                                             "<output>/.medfm/vlm_cache.sqlite, 'none' = no cache"})
    allow_incomplete: bool = field(default=False, metadata={"help": "evaluate a build that did not finish or has no "
                                                                    "manifest (recorded in run.json)"})


def parse_eval_args(argv: list[str] | None = None) -> EvalArguments:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(EvalArguments)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args
