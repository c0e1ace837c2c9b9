"""Benchmark the dataset build: 1 process, --num-proc N, N accelerate ranks, and the fingerprinting overhead.

    python benchmarks/build_bench.py                       # the demo set, every perturbation, 5 levels
    python benchmarks/build_bench.py --perturbations gaussian_noise,ct_ring,rotate --levels 1,3

Prints one table: build seconds with one process, with ``--num-proc N`` (a process pool), and with
``accelerate launch`` of N CPU ranks (``accelerate_configs/cpu_2proc.yaml`` for N = 2), the speed-up of each,
and whether the three folders hold the same data (their manifests' data fingerprints). Then the
fingerprinting overhead of the one-process build -- the time spent hashing inputs, records and written
files and checking markers, measured by timing those functions -- as a share of the build, for a fresh
build and for a rerun that resumes everything. Last, the time ``load_dataset`` takes for one config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


_DEPTH = {"n": 0}  # shared by every wrapper: nested timed calls are counted once


def _timed(module, name: str, totals: dict) -> None:
    """Wrap ``module.name`` so that its wall time adds up in ``totals[name]`` (outermost calls only)."""
    real = getattr(module, name)
    depth = _DEPTH

    def wrapper(*a, **kw):
        depth["n"] += 1
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                totals[name] += time.perf_counter() - t

    setattr(module, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--perturbations", default="all")
    ap.add_argument("--modalities", default=None)
    ap.add_argument("--levels", default="1-5")
    ap.add_argument("--num-proc", type=int, default=2, help="pool size and number of accelerate ranks")
    ap.add_argument("--config", default="gaussian_noise_l3", help="config whose load_dataset time is measured")
    args = ap.parse_args()

    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        os.environ.setdefault(k, "1")
    import medfm_hf.benchmark.build as b
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.benchmark.layout import parse_levels

    perts = None if args.perturbations == "all" else args.perturbations.split(",")
    mods = args.modalities.split(",") if args.modalities else None
    settings = BuildSettings(perturbations=perts, modalities=mods, levels=parse_levels(args.levels))
    totals: dict[str, float] = defaultdict(float)
    for name in ("input_files", "record_hash", "shard_fingerprint", "_files_intact", "sha256_file"):
        _timed(b, name, totals)
    tmp = tempfile.mkdtemp(prefix="medfm_build_bench_")
    rows, fps = [], {}
    try:
        # warm-up: imports and the demo source's generated images, so the in-process runs compare fairly
        warm = BuildSettings(perturbations=["contrast"], modalities=mods, levels=[1])
        build_benchmark(warm, os.path.join(tmp, "warm"), num_proc=1, progress=False)
        totals.clear()
        out1 = os.path.join(tmp, "one", "medfm-robust")
        t = time.perf_counter()
        s = build_benchmark(settings, out1, num_proc=1, progress=False)
        one = time.perf_counter() - t
        fresh_fp = sum(totals.values())
        rows.append(("1 process", one, s["shards"], int(s["report"]["cells"].sum())))
        totals.clear()
        t = time.perf_counter()
        build_benchmark(settings, out1, num_proc=1, progress=False)
        resume = time.perf_counter() - t
        resume_fp = sum(totals.values())

        outp = os.path.join(tmp, "pool", "medfm-robust")
        t = time.perf_counter()
        s = build_benchmark(settings, outp, num_proc=args.num_proc, progress=False)
        rows.append((f"--num-proc {args.num_proc}", time.perf_counter() - t, s["shards"],
                     int(s["report"]["cells"].sum())))

        outa = os.path.join(tmp, "ranks", "medfm-robust")
        config = os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
               "--num_processes", str(args.num_proc), "--main_process_port", _free_port(), "-m", "medfm_hf.cli", "build", "--sources", "demo",
               "--out", outa, "--levels", args.levels, "--perturbations", args.perturbations, "--no-progress"]
        if args.modalities:
            cmd += ["--modalities", args.modalities]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        rows.append((f"accelerate, {args.num_proc} ranks", time.perf_counter() - t, rows[0][2], rows[0][3]))
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
        launch = time.perf_counter() - t  # everything resumed: launcher, imports, sources, manifest
        for label, folder in (("1 process", out1), (f"--num-proc {args.num_proc}", outp),
                              (f"accelerate, {args.num_proc} ranks", outa)):
            with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as fh:
                fps[label] = json.load(fh)["data_fingerprint"]

        from datasets import load_dataset

        cache = os.path.join(tmp, "hf_cache")
        t = time.perf_counter()
        ds = load_dataset(out1, args.config, split="test", cache_dir=cache)
        cold = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"{'run':<22} {'seconds':>8} {'speed-up':>9} {'shards':>7} {'cells':>7}  data fingerprint")
    for label, sec, shards, cells in rows:
        print(f"{label:<22} {sec:>8.1f} {base / sec:>9.2f} {shards:>7} {cells:>7}  {fps[label]}")
    same = len(set(fps.values())) == 1
    print(f"same data in all three folders: {'yes' if same else 'NO'}")
    print(f"fingerprinting: {fresh_fp:.2f} s of the {one:.1f} s fresh build ({100 * fresh_fp / one:.2f} %), "
          f"{resume_fp:.2f} s of the {resume:.1f} s resumed rerun ({100 * resume_fp / resume:.1f} %)")
    print(f"accelerate launch fixed cost (a rerun that resumes every shard): {launch:.1f} s")
    print(f"load_dataset(folder, {args.config!r}): {len(ds)} rows in {cold:.2f} s (first load)")


if __name__ == "__main__":
    main()
