"""``medfm-robust demo``: the whole pipeline on the embedded demo set, offline, in minutes on a laptop.

1. build the demo benchmark (every applicable perturbation, 5 calibrated levels);
2. train a small SAM-architecture model for about a minute on the demo train split (validation split for
   model selection; the test split is never seen);
3. evaluate the weight-free GrabCut baseline on every config;
4. evaluate the small SAM on every config and under FGSM/PGD (attacks need gradients, and a trained model
   makes the numbers mean something);
5. write ``REPORT.md`` with the summary tables and severity curves;
6. run the VLM tasks (vqa, caption, grounding): ``--vlm MODEL``, by default a tiny random model as a
   pipeline check (:mod:`medfm_hf.tasks.demo`, ``VLM_REPORT.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

NAME = "demo"
HELP = "Run the pipeline end to end on the embedded demo data (no downloads, ~10 min on 2 cores)."

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for the benchmark build")
    parser.add_argument("--train-seconds", type=float, default=90.0, help="training time of the small SAM")
    parser.add_argument("--perturbations", default="all", help="'all' or comma-separated names (for a quicker run)")
    parser.add_argument("--seed", type=int, default=0, help="global seed")
    from medfm_hf.tasks.demo import add_vlm_arguments

    add_vlm_arguments(parser)  # --vlm MODEL (default: a tiny random model as a VLM pipeline check)


def _train_small_sam(out: str, seconds: float, seed: int) -> tuple[str, dict]:
    import torch

    from medfm_hf.finetune import train_segmenter
    from medfm_hf.models import create_segmenter
    from medfm_hf.sources.demo import load_demo

    torch.manual_seed(seed)
    model = create_segmenter("sam", size="tiny", image_size=128, seed=seed)
    res = train_segmenter(model, load_demo("train"), load_demo("validation"), max_seconds=seconds, seed=seed,
                          lr=3e-3, batch_size=8)
    folder = os.path.join(out, "models", "small_sam")
    model.save_pretrained(folder)
    info = {"best_val_iou": res.best_val_iou, "best_step": res.best_step, "steps": res.steps,
            "seconds": res.seconds, "architecture": "SAM (transformers SamModel), tiny preset, 128 px input"}
    with open(os.path.join(out, "models", "small_sam_training.json"), "w", encoding="utf-8") as fh:
        json.dump({**info, "history": res.history}, fh, indent=2)
    return folder, info


def run(args: argparse.Namespace) -> int:
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.report import print_summary
    from medfm_hf.evaluation.segmentation import evaluate_segmentation

    t0 = time.perf_counter()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    bench = os.path.join(out, "medfm-robust")
    timings = {}

    print("== 1/4 building the demo benchmark (calibrating every perturbation at 5 levels per image)", flush=True)
    t = time.perf_counter()
    perts = None if args.perturbations == "all" else [p.strip() for p in args.perturbations.split(",")]
    summary = build_benchmark(BuildSettings(perturbations=perts, seed=args.seed), bench, num_proc=args.num_proc,
                              overwrite=False)
    rep = summary["report"]
    in_band = float((rep["in_band_rate"] * rep["cells"]).sum() / rep["cells"].sum())
    timings["build"] = time.perf_counter() - t
    print(f"   {summary['records']} clean records, {summary['shards']} shards, {in_band:.1%} of "
          f"{int(rep['cells'].sum())} calibrated cells in band ({timings['build']:.0f} s)")

    print(f"== 2/4 training a small SAM for ~{args.train_seconds:.0f} s on the demo train split", flush=True)
    t = time.perf_counter()
    ckpt_info_path = os.path.join(out, "models", "small_sam_training.json")
    ckpt = os.path.join(out, "models", "small_sam")
    if os.path.exists(os.path.join(ckpt, "config.json")) and os.path.exists(ckpt_info_path):
        with open(ckpt_info_path, encoding="utf-8") as fh:
            train_info = json.load(fh)
        print("   (reusing the model trained by a previous run)")
    else:
        ckpt, train_info = _train_small_sam(out, args.train_seconds, args.seed)
    timings["train"] = time.perf_counter() - t
    print(f"   {train_info['steps']} steps, best validation IoU {train_info['best_val_iou']:.3f}")

    print("== 3/4 evaluating the GrabCut baseline on every config", flush=True)
    t = time.perf_counter()
    gc = evaluate_segmentation(EvalArguments(model="grabcut", dataset=bench, output=os.path.join(out, "results",
                                                                                                  "grabcut"),
                                             batch_size=16))
    timings["grabcut"] = time.perf_counter() - t
    print_summary(gc["summary"])

    print("== 4/4 evaluating the small SAM on every config and under FGSM / PGD", flush=True)
    t = time.perf_counter()
    sm = evaluate_segmentation(EvalArguments(model="sam", checkpoint=ckpt, dataset=bench,
                                             output=os.path.join(out, "results", "small_sam"), attacks="fgsm,pgd",
                                             batch_size=16, seed=args.seed))
    timings["small_sam"] = time.perf_counter() - t
    print_summary(sm["summary"])

    from medfm_hf.evaluation.markdown import write_demo_report

    path = write_demo_report(out, {"grabcut": gc, "small_sam": sm}, train_info, summary, in_band, timings)
    from medfm_hf.tasks.demo import run_vlm_demo

    run_vlm_demo(args, bench, out, args.seed)  # VQA, captioning and grounding (docs/vlm_evaluation.md)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; report: {path}")
    return 0
