"""Benchmark the evaluator: samples/s with 1 vs 2 processes and batch 1 vs 8 (tiny SAM, GrabCut, and the
VQA task with a tiny random MedGemma).

    python benchmarks/evaluator_bench.py
    python benchmarks/evaluator_bench.py --configs "gaussian_noise_l*" --limit 12
    python benchmarks/evaluator_bench.py --only "medgemma vqa (tiny)" --limit 6

Every run is also compared with the 1-process batch-1 run of the same model: ``identical`` says whether the
per-sample results (all columns but the timings) are the same.

Builds a small demo benchmark once, then runs `evaluate.py` in fresh output folders: in-process for one
process and through `accelerate launch --config_file accelerate_configs/cpu_2proc.yaml` for two, and prints
one table side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"sam (tiny)": ("sam", '{"size": "tiny", "image_size": 128}', "segmentation"),
          "grabcut": ("grabcut", "{}", "segmentation"),
          "medgemma vqa (tiny)": ("medgemma", '{"size": "tiny"}', "vqa")}


def results_file(out: str, model: str, task: str) -> str:
    return os.path.join(out, f"{model}_results.parquet" if task == "segmentation" else f"{model}_{task}_results.parquet")


def run(model: str, kwargs: str, bench: str, out: str, batch: int, procs: int, configs: str, limit: int,
        task: str = "segmentation") -> tuple[float, float, pd.DataFrame]:
    cmd = [os.path.join(ROOT, "evaluate.py"), "--model", model, "--dataset", bench, "--output", out,
           "--model_kwargs", kwargs, "--batch_size", str(batch), "--configs", configs, "--limit", str(limit),
           "--task", task, "--no_progress"]
    if task == "vqa":
        cmd += ["--max_new_tokens", "8"]
    if procs == 1:
        cmd = [sys.executable, *cmd]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"), *cmd]
    t = time.perf_counter()
    # one thread per process in every run (accelerate launch sets this itself; a plain python process would
    # otherwise start a thread per core, which for tiny models on a shared machine costs more than it gives)
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t
    df = pd.read_parquet(results_file(out, model, task))
    # compute-only: the per-sample seconds summed over the run, spread over the processes that ran them
    compute = df["seconds"].sum() / procs
    return len(df) / wall, len(df) / compute, df.drop(columns=["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="gaussian_noise_l*,translate_l*")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--only", default="", help="comma-separated model labels (default: all of " + ", ".join(MODELS) + ")")
    args = ap.parse_args()
    chosen = [m.strip() for m in args.only.split(",") if m.strip()] or list(MODELS)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark

    tmp = tempfile.mkdtemp(prefix="medfm_eval_bench_")
    try:
        bench = os.path.join(tmp, "medfm-robust")
        build_benchmark(BuildSettings(perturbations=["gaussian_noise", "translate"], levels=[1, 3, 5]), bench,
                        num_proc=2, progress=False)
        rows, comp_rows = [], []
        for label in chosen:
            model, kw, task = MODELS[label]
            r = {"model": label}
            c = {"model": label}
            ref = None
            same = []
            for procs in (1, 2):
                for batch in (1, 8):
                    out = os.path.join(tmp, f"{model}-{task}-{procs}-{batch}")
                    wall, comp, df = run(model, kw, bench, out, batch, procs, args.configs, args.limit, task)
                    r[f"{procs}proc b{batch}"] = wall
                    c[f"{procs}proc b{batch}"] = comp
                    ref = df if ref is None else ref
                    a, b = df.reset_index(drop=True), ref.reset_index(drop=True)
                    diff = [col for col in a.columns if not a[col].equals(b[col])]
                    if diff:
                        n = int((a[diff[0]] != b[diff[0]]).sum())
                        same.append(f"{procs}proc b{batch}: {', '.join(diff)} ({n} rows)")
            r["identical"] = "yes" if not same else "NO: " + "; ".join(same)
            r["samples"] = len(ref)
            rows.append(r)
            comp_rows.append(c)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fmt = lambda v: f"{v:.1f}"  # noqa: E731
    print("samples/s, wall clock including process start-up and model loading (higher is better)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=fmt))
    print("\nsamples/s, evaluation loop only (per-sample seconds summed, divided by the processes)")
    print(pd.DataFrame(comp_rows).to_string(index=False, float_format=fmt))


if __name__ == "__main__":
    main()
