"""The VLM part of ``medfm-robust demo``: ``vqa``, ``caption`` and ``grounding`` on the demo benchmark.

By default (no ``--vlm``) it runs the three tasks end to end with a **tiny random MedGemma** on a few images
and two perturbed configs: a *pipeline check* that shows a new user the files a VLM run writes, labelled so
in every table (its numbers mean nothing). ``--vlm MODEL`` (``medgemma``, ``llava_med``, ``openai``,
``gemini``, ...) runs the real model on every config, with ``--vlm-checkpoint`` and ``--vlm-kwargs``
(e.g. ``'{"base_url": "http://localhost:8000/v1"}'`` for a vLLM server); ``--vlm none`` skips this part.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["add_vlm_arguments", "run_vlm_demo"]

TASKS = ("vqa", "caption", "grounding")
CHECK_CONFIGS = ("gaussian_noise_l3", "translate_l3")  # the pipeline check's perturbed configs (when built)


def add_vlm_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's VLM flags."""
    parser.add_argument("--vlm", default="tiny", help="vision-language model for the VQA/caption/grounding part: "
                        "'tiny' (default: a tiny random MedGemma, a pipeline check), a family (medgemma, llava_med, "
                        "hf, openai, gemini) or 'none'")
    parser.add_argument("--vlm-checkpoint", default=None, help="VLM checkpoint (local/Hub) or API model name")
    parser.add_argument("--vlm-kwargs", default="{}", help="VLM options as JSON, e.g. '{\"base_url\": \"...\"}'")
    parser.add_argument("--vlm-limit", type=int, default=None,
                        help="clean images per VLM task (default: 4 for the pipeline check, all otherwise)")


def _check_configs(bench: str) -> str:
    from medfm_hf.benchmark.reader import BenchmarkReader

    have = BenchmarkReader(bench, verify=False).perturbation_configs()
    chosen = [c for c in CHECK_CONFIGS if c in have] or have[:2]
    return ",".join(chosen) or "none"


def run_vlm_demo(args: argparse.Namespace, bench: str, out: str, seed: int = 0) -> dict[str, Any] | None:
    """Run the three VLM tasks on ``bench``; results in ``<out>/results/vlm/<model>/<task>``, a report in
    ``<out>/VLM_REPORT.md``. Returns ``{task: results}`` (``None`` with ``--vlm none``)."""
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.report import print_summary
    from medfm_hf.evaluation.runner import evaluate

    choice = getattr(args, "vlm", "tiny") or "tiny"
    if choice == "none":
        return None
    check = choice == "tiny"
    model = "medgemma" if check else choice
    kwargs = {"size": "tiny", "seed": seed} if check else json.loads(getattr(args, "vlm_kwargs", "{}") or "{}")
    limit = getattr(args, "vlm_limit", None) or (4 if check else None)
    configs = _check_configs(bench) if check else "all"
    label = "tiny random MedGemma: PIPELINE CHECK, the numbers mean nothing" if check else model
    runs: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for task in TASKS:
        print(f"== VLM {task} ({label})", flush=True)
        t = time.perf_counter()
        res = evaluate(EvalArguments(
            task=task, model=model, checkpoint=None if check else getattr(args, "vlm_checkpoint", None),
            model_kwargs=json.dumps(kwargs), dataset=bench, output=os.path.join(out, "results", "vlm", model, task),
            configs=configs, levels="1-5", limit=limit, batch_size=4, seed=seed,
            max_new_tokens=8 if check else None, no_progress=True))
        timings[task] = time.perf_counter() - t
        runs[task] = res
        print_summary(res["summary"])
    path = write_vlm_report(out, model, label, runs, timings)
    print(f"VLM report: {path}")
    return runs


def write_vlm_report(out: str, model: str, label: str, runs: dict[str, Any], timings: dict[str, float]) -> str:
    """``<out>/VLM_REPORT.md``: the summary of each task and the files each run wrote."""
    from medfm_hf.dataset_io import format_table
    from medfm_hf.io import atomic_write_text

    parts = [f"# VLM robustness: {label}\n",
             "Each task ran through the same evaluator as segmentation (`evaluate.py --task ...`); the "
             "per-sample rows hold the prompt, the raw output, the parsed answer, the score, finish reason, "
             "tokens, seconds and cache hits.\n"]
    for task, res in runs.items():
        s = res["summary"].copy()
        for c in s.columns:
            if s[c].dtype.kind == "f":
                s[c] = s[c].map(lambda v: f"{v:.3f}")
        folder = os.path.relpath(os.path.join(out, "results", "vlm", model, task), out)
        files = sorted(f for f in os.listdir(os.path.join(out, folder)) if not f.startswith("."))
        parts.append(f"## {task} ({timings[task]:.0f} s, {res['run']['samples']} samples)\n\n"
                     f"{format_table(s.to_dict('records'), markdown=True)}\n\nFiles in `{folder}/`: "
                     + ", ".join(f"`{f}`" for f in files) + "\n")
    path = os.path.join(out, "VLM_REPORT.md")
    atomic_write_text(path, "\n".join(parts))
    return path
