"""How the evaluator should read a build: the BenchmarkReader versus ``datasets.load_dataset``.

    python benchmarks/reader_bench.py                 # builds a small demo benchmark first
    python benchmarks/reader_bench.py --dataset medfm-robust

For every config of the build, time (a) ``BenchmarkReader``: verify the files against the manifest, read the
parquet, decode every image and mask; (b) ``load_dataset(folder, config, split="test")`` with a fresh cache,
then decode every image and mask the same way (first load, which builds the Arrow cache, and a second,
cached load). Prints seconds per config and the total, and checks both give the same pixels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=None, help="a build folder (default: build a small demo benchmark)")
    args = ap.parse_args()
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        os.environ.setdefault(k, "1")
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    from medfm_hf.benchmark import BuildSettings, build_benchmark
    from medfm_hf.benchmark.reader import BenchmarkReader
    from medfm_hf.records import decode_png

    disable_progress_bar()
    tmp = tempfile.mkdtemp(prefix="medfm_reader_bench_")
    try:
        folder = args.dataset
        if folder is None:
            folder = os.path.join(tmp, "medfm-robust")
            build_benchmark(BuildSettings(perturbations=["gaussian_noise", "contrast", "rotate", "ct_ring"],
                                          levels=[1, 3, 5]), folder, progress=False)
        configs = BenchmarkReader(folder).configs
        t_reader = t_cold = t_warm = 0.0
        for cfg in configs:
            t = time.perf_counter()
            reader = BenchmarkReader(folder)
            rows = [reader.row(cfg, i) for i in range(len(reader.table(cfg)))]
            t_reader += time.perf_counter() - t
            cache = os.path.join(tmp, "cache")
            for warm in (False, True):
                t = time.perf_counter()
                ds = load_dataset(folder, cfg, split="test", cache_dir=cache).with_format(None)
                ds = ds.cast_column("image", __import__("datasets").Image(decode=False))
                ds = ds.cast_column("mask", __import__("datasets").Image(decode=False))
                got = [(decode_png(r["image"]["bytes"]), decode_png(r["mask"]["bytes"]) > 127) for r in ds]
                dt = time.perf_counter() - t
                t_warm, t_cold = (t_warm + dt, t_cold) if warm else (t_warm, t_cold + dt)
            by_id = {r.image_id: r for r in rows}
            assert len(by_id) == len(ds)
            for r, (img, mask) in zip(ds, got):
                assert np.array_equal(by_id[r["image_id"]].image, img)
                assert np.array_equal(by_id[r["image_id"]].mask, mask)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(configs)
    print(f"{'reader':<44} {'seconds':>8} {'per config':>11}")
    for label, sec in (("BenchmarkReader (verify + read + decode)", t_reader),
                       ("load_dataset, first load (+ decode)", t_cold), ("load_dataset, cached (+ decode)", t_warm)):
        print(f"{label:<44} {sec:>8.2f} {sec / n:>11.3f}")
    print(f"{n} configs of {folder if args.dataset else 'a demo build'}; the same pixels from both")


if __name__ == "__main__":
    main()
