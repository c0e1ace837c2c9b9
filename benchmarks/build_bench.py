"""Benchmark the dataset build: demo-set build time with 1 and 2 processes, and load_dataset time.

    python benchmarks/build_bench.py                       # every perturbation, 5 levels
    python benchmarks/build_bench.py --perturbations gaussian_noise,ct_ring,rotate

Prints one table: build seconds with --num-proc 1 and N, the speed-up, and the time `load_dataset` takes
to load one config of the finished build (whose card declares every config).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--perturbations", default="all")
    ap.add_argument("--modalities", default=None)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--config", default="gaussian_noise_l3", help="config whose load time is measured")
    args = ap.parse_args()

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark

    perts = None if args.perturbations == "all" else args.perturbations.split(",")
    mods = args.modalities.split(",") if args.modalities else None
    rows = []
    tmp = tempfile.mkdtemp(prefix="medfm_build_bench_")
    try:
        for n in (1, args.num_proc):
            out = os.path.join(tmp, f"np{n}", "medfm-robust")
            t = time.perf_counter()
            s = build_benchmark(BuildSettings(perturbations=perts, modalities=mods), out, num_proc=n, progress=False)
            rows.append((n, time.perf_counter() - t, s["shards"], int(s["report"]["cells"].sum())))
        from datasets import load_dataset

        from medfm_hf.benchmark import list_configs

        out = os.path.join(tmp, f"np{args.num_proc}", "medfm-robust")
        n_configs = len(list_configs(out))
        cache = os.path.join(tmp, "hf_cache")
        t = time.perf_counter()
        ds = load_dataset(out, args.config, split="test", cache_dir=cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        load_dataset(out, args.config, split="test", cache_dir=cache)
        warm = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"{'num_proc':>8} {'seconds':>9} {'speed-up':>9} {'shards':>7} {'cells':>7}")
    for n, sec, shards, cells in rows:
        print(f"{n:>8} {sec:>9.1f} {base / sec:>9.2f} {shards:>7} {cells:>7}")
    print(f"load_dataset(folder, {args.config!r}) with {n_configs} configs declared: {len(ds)} rows, "
          f"first load {cold:.2f} s, cached {warm:.2f} s")


if __name__ == "__main__":
    main()
