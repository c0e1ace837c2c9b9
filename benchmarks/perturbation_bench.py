"""Benchmark of the perturbation engine: calibrated generation on the demo test set.

For every demo test image (at 256 px, and up-sampled to 512 px) and every applicable perturbation it
runs :func:`medfm_hf.calibration.calibrate` for levels 1-5 and reports

* time per image (all its perturbations) and per (image, perturbation), per family;
* mean SSIM evaluations per (image, perturbation, level) cell;
* in-band rate per perturbation x level and per modality x level, and among the cells whose band is
  within reach (the SSIM at the top of the strength range is at or below the band's upper edge), which
  separates the search's misses from bands the perturbation cannot reach on that image;
* in the same run, the naive baseline -- an independent 20-step bisection of the strength range per
  level, the reference project's search -- on a subset, with the time ratio on the same subset;
* SSIM speed: :func:`medfm_hf.ssim.ssim` and the reused-reference form against scikit-image;
* with ``--reference REF`` (a git commit of this repository, e.g. the one before the FOV-aware
  calibration), the same jobs calibrated by that commit's code in a subprocess, in the same run: SSIM
  evaluations per cell and time per cell of both, and their ratio (the acceptance is <= 2 evaluations
  per cell and at most 1.5x the reference's time per cell).

Calibration here is what the build does: SSIM over the record's field of view (``fov``, resized with
the image), CT through the record's window, within each perturbation's physical ceiling; "reachable"
means that the SSIM at the ceiling is at or below the band's upper edge.

Usage::

    python benchmarks/perturbation_bench.py                       # base perturbations, 256 and 512 px
    python benchmarks/perturbation_bench.py --perturbations all --sizes 256
    python benchmarks/perturbation_bench.py --perturbations jpeg,rotate --per-modality 2 --no-naive

It prints markdown tables (paste them into docs/perturbation_benchmark.md).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import warnings
from collections import defaultdict

import cv2
import numpy as np
from tqdm import tqdm

from medfm_hf.calibration import BANDS, calibrate, derive_seed
from medfm_hf.perturbations import get_perturbation, list_perturbations
from medfm_hf.perturbations.ct import ct_window
from medfm_hf.sources.demo import load_demo
from medfm_hf.ssim import SSIMReference, ssim

LEVELS = (1, 2, 3, 4, 5)
BASE = ("gaussian_noise", "salt_pepper", "speckle_noise", "gaussian_blur", "motion_blur", "defocus_blur",
        "jpeg", "pixelate", "contrast", "brightness", "saturation", "rotate", "scale", "translate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--perturbations", default="base",
                    help="'base' (the 14 base ones), 'all' (the whole registry) or a comma list of names")
    ap.add_argument("--sizes", default="256,512", help="comma list of image sizes in pixels (default 256,512)")
    ap.add_argument("--per-modality", type=int, default=0,
                    help="demo test images per modality (0 = all of them)")
    ap.add_argument("--naive-per-modality", type=int, default=1,
                    help="images per modality on which the naive baseline also runs (default 1)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    ap.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    ap.add_argument("--reference", default="",
                    help="git commit whose calibration code to time on the same jobs in this run (e.g. 39bc1fd)")
    return ap.parse_args(argv)


def select_perturbations(spec: str) -> list[str]:
    if spec == "base":
        return list(BASE)
    if spec == "all":
        return list_perturbations()
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for n in names:
        get_perturbation(n)  # clear error for unknown names
    return names


def _nearest(mask: np.ndarray | None, size: int) -> np.ndarray | None:
    if mask is None or mask.shape[:2] == (size, size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


def resized(image: np.ndarray, mask: np.ndarray | None, size: int):
    if image.shape[0] == size and image.shape[1] == size:
        return image, mask
    img = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC).reshape((size, size) + image.shape[2:])
    return img, _nearest(mask, size)


_REFERENCE_SCRIPT = """
import json, sys, time, logging
import cv2, numpy as np
logging.disable(logging.WARNING)
from medfm_hf.calibration import calibrate
from medfm_hf.sources.demo import load_demo
spec = json.loads(sys.argv[1])
recs = {r.image_id: r for r in load_demo(split="test")}
total = 0.0; evals = 0; cells = 0
for image_id, name in spec["jobs"]:
    r = recs[image_id]; size = spec["size"]
    img = r.image if r.image.shape[0] == size else cv2.resize(r.image, (size, size),
        interpolation=cv2.INTER_CUBIC).reshape((size, size) + r.image.shape[2:])
    t0 = time.perf_counter()
    res = calibrate(img, name, image_id=image_id, seed=spec["seed"])
    total += time.perf_counter() - t0
    evals += sum(x.evaluations for x in res); cells += len(res)
print(json.dumps({"seconds": total, "evaluations": evals, "cells": cells}))
"""


def reference_timing(ref: str, jobs: list[tuple[str, str]], size: int, seed: int) -> dict:
    """Calibrate ``jobs`` ((image_id, perturbation) pairs) with the code of git commit ``ref``.

    The package at ``ref`` is extracted with ``git archive`` into a temporary folder and run in a
    subprocess with that folder first on ``sys.path``; returns its seconds, evaluations and cells.
    """
    import json
    import os
    import subprocess
    import tarfile
    import tempfile

    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "ref.tar")
        subprocess.run(["git", "-C", root, "archive", "--format=tar", "-o", archive, ref, "medfm_hf"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = dict(os.environ, PYTHONPATH=tmp)
        spec = json.dumps({"jobs": jobs, "size": size, "seed": seed})
        out = subprocess.run([sys.executable, "-c", _REFERENCE_SCRIPT, spec], capture_output=True, text=True,
                             env=env, cwd=tmp, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def naive_calibrate(image: np.ndarray, name: str, image_id: str, seed: int) -> tuple[int, int, int]:
    """The reference project's search: per level, 20 bisection steps on [0, max] toward the band centre.

    Returns (cells in band, cells, SSIM evaluations).
    """
    p = get_perturbation(name)
    derived = derive_seed(seed, image_id, name)
    ref = SSIMReference(image)
    hits = evals = 0
    for level in LEVELS:
        lo_b, hi_b = BANDS[level]
        target = (lo_b + hi_b) / 2
        lo, hi = 0.0, p.strength_range[1]
        value = 1.0
        for _ in range(20):
            mid = (lo + hi) / 2
            out = p.apply(image, mid, np.random.default_rng(derived))[0]
            value = ref.score(out)
            evals += 1
            if value > target:
                lo = mid
            else:
                hi = mid
        hits += lo_b <= value <= hi_b
    return hits, len(LEVELS), evals


def pct(num: float, den: float) -> str:
    return "-" if den == 0 else f"{100.0 * num / den:.1f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    from medfm_hf.dataset_io import format_table

    return format_table([dict(zip(header, r)) for r in rows], markdown=True)


def ssim_speed(sizes: list[int]) -> str:
    from skimage import data
    from skimage.metrics import structural_similarity

    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        for kind, src in (("grey", data.camera()), ("RGB", data.immunohistochemistry())):
            a = cv2.resize(src, (size, size), interpolation=cv2.INTER_AREA).reshape((size, size) + src.shape[2:])
            b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
            ca = -1 if a.ndim == 3 else None

            def timed(fn, reps=20):
                fn()
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                return (time.perf_counter() - t0) / reps * 1e3

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_sk = timed(lambda a=a, b=b, ca=ca: structural_similarity(a, b, data_range=255, channel_axis=ca))
                diff = abs(structural_similarity(a, b, data_range=255, channel_axis=ca) - ssim(a, b))
            t_ours = timed(lambda a=a, b=b: ssim(a, b))
            ref = SSIMReference(a)
            t_ref = timed(lambda ref=ref, b=b: ref.score(b))
            rows.append([f"{size}", kind, f"{t_sk:.2f}", f"{t_ours:.2f}", f"{t_ref:.2f}",
                         f"{t_sk / t_ours:.1f}x", f"{t_sk / t_ref:.1f}x", f"{diff:.1e}"])
    return md_table(["size", "image", "skimage ms", "ssim() ms", "SSIMReference.score ms", "speed-up ssim()",
                     "speed-up reused reference", "max abs diff"], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # unreachable bands are counted here, not logged
    names = select_perturbations(args.perturbations)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    records = load_demo(split="test", per_modality=args.per_modality or None)
    naive_ids: set[str] = set()
    count: dict[str, int] = defaultdict(int)
    for r in records:
        count[r.modality] += 1
        if count[r.modality] <= args.naive_per_modality:
            naive_ids.add(r.image_id)

    print("# perturbation benchmark\n")
    print(f"command: `python {' '.join(['benchmarks/perturbation_bench.py', *(argv or sys.argv[1:])])}`  ")
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, OpenCV {cv2.__version__}  ")
    print(f"images: {len(records)} demo test images; perturbations: {len(names)}\n")

    for size in sizes:
        per_pl: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        reach_p: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [in band, reachable cells]
        per_ml: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        per_p_time: dict[str, list[float]] = defaultdict(list)
        per_p_evals: dict[str, list[int]] = defaultdict(list)
        per_family_time: dict[str, list[float]] = defaultdict(list)
        per_image_time: dict[str, float] = defaultdict(float)
        ours_subset_time = naive_time = 0.0
        naive_hits = naive_cells = naive_evals = ours_sub_hits = ours_sub_cells = ours_sub_evals = 0
        jobs = [(r, n) for r in records for n in names if get_perturbation(n).applies_to(r.modality, r.image)]
        for rec, name in tqdm(jobs, desc=f"calibrate {size}px", file=sys.stderr):
            image, mask = resized(rec.image, rec.mask, size)
            fov = _nearest(rec.field_of_view(), size)
            window = ct_window(rec.meta) if rec.modality == "ct" else None
            p = get_perturbation(name)
            t0 = time.perf_counter()
            results = calibrate(image, name, image_id=rec.image_id, seed=args.seed, mask=mask, fov=fov,
                                window=window)
            dt = time.perf_counter() - t0
            per_p_time[name].append(dt)
            # Reachability (not timed, not a calibration evaluation): the band is within reach when the
            # FOV SSIM at the physical ceiling is at or below the band's upper edge.
            top = p.apply(image, p.max_strength, np.random.default_rng(results[0].seed), fov=fov, window=window)[0]
            ssim_top = ssim(image, top, fov=fov)
            per_family_time[p.family].append(dt)
            per_image_time[rec.image_id] += dt
            for r in results:
                per_pl[(name, r.level)][0] += r.in_band
                per_pl[(name, r.level)][1] += 1
                per_ml[(rec.modality, r.level)][0] += r.in_band
                per_ml[(rec.modality, r.level)][1] += 1
                per_p_evals[name].append(r.evaluations)
                if ssim_top <= BANDS[r.level][1]:
                    reach_p[name][0] += r.in_band
                    reach_p[name][1] += 1
            if not args.no_naive and rec.image_id in naive_ids:
                ours_subset_time += dt
                ours_sub_hits += sum(r.in_band for r in results)
                ours_sub_cells += len(results)
                ours_sub_evals += sum(r.evaluations for r in results)
                t0 = time.perf_counter()
                h, c, e = naive_calibrate(image, name, rec.image_id, args.seed)
                naive_time += time.perf_counter() - t0
                naive_hits += h
                naive_cells += c
                naive_evals += e

        all_hits = sum(v[0] for v in per_pl.values())
        all_cells = sum(v[1] for v in per_pl.values())
        all_evals = sum(sum(v) for v in per_p_evals.values())
        reach_hits = sum(v[0] for v in reach_p.values())
        reach_cells = sum(v[1] for v in reach_p.values())
        print(f"## {size} x {size} px\n")
        print(md_table(
            ["images", "(image, perturbation) pairs", "cells", "in band %", "reachable cells %",
             "in band % of reachable", "SSIM evals / cell",
             "time / image (all its perturbations) s", "time / (image, perturbation) ms"],
            [[str(len(per_image_time)), str(len(jobs)), str(all_cells), pct(all_hits, all_cells),
              pct(reach_cells, all_cells), pct(reach_hits, reach_cells),
              f"{all_evals / max(all_cells, 1):.2f}", f"{np.mean(list(per_image_time.values())):.2f}",
              f"{1e3 * sum(map(sum, per_p_time.values())) / max(len(jobs), 1):.1f}"]],
        ))
        print("\n### in-band rate (%) per perturbation x level\n")
        rows = []
        for name in names:
            if name not in per_p_time:
                continue
            cells = [per_pl[(name, lv)] for lv in LEVELS]
            hits = sum(c[0] for c in cells)
            tot = sum(c[1] for c in cells)
            rows.append([name, get_perturbation(name).family, *(pct(*c) for c in cells), pct(hits, tot),
                         pct(reach_p[name][1], tot), pct(*reach_p[name]),
                         f"{np.mean(per_p_evals[name]):.2f}", f"{1e3 * np.mean(per_p_time[name]):.1f}"])
        print(md_table(["perturbation", "family", *(f"L{lv}" for lv in LEVELS), "all", "reachable %",
                        "in band % of reachable", "evals / cell",
                        "ms / (image, perturbation)"], rows))
        print("\n### in-band rate (%) per modality x level\n")
        rows = []
        for modality in sorted({m for m, _ in per_ml}):
            cells = [per_ml[(modality, lv)] for lv in LEVELS]
            rows.append([modality, *(pct(*c) for c in cells),
                         pct(sum(c[0] for c in cells), sum(c[1] for c in cells))])
        print(md_table(["modality", *(f"L{lv}" for lv in LEVELS), "all"], rows))
        print("\n### time per family\n")
        rows = [[fam, str(len(ts)), f"{1e3 * np.mean(ts):.1f}", f"{sum(ts):.1f}"]
                for fam, ts in sorted(per_family_time.items())]
        print(md_table(["family", "(image, perturbation) pairs", "ms / pair (5 levels)", "total s"], rows))
        if not args.no_naive and naive_cells:
            print(f"\n### naive baseline (20-step bisection per level) on {len(naive_ids)} images\n")
            print(md_table(
                ["search", "cells", "in band %", "SSIM evals / cell", "time s", "time ratio"],
                [["calibrated (this package)", str(ours_sub_cells), pct(ours_sub_hits, ours_sub_cells),
                  f"{ours_sub_evals / ours_sub_cells:.2f}", f"{ours_subset_time:.1f}", "1.0"],
                 ["naive bisection", str(naive_cells), pct(naive_hits, naive_cells),
                  f"{naive_evals / naive_cells:.2f}", f"{naive_time:.1f}",
                  f"{naive_time / max(ours_subset_time, 1e-9):.1f}x slower"]],
            ))
        if args.reference:
            ref = reference_timing(args.reference, [(r.image_id, n) for r, n in jobs], size, args.seed)
            ours_s = sum(map(sum, per_p_time.values()))
            ours_ms, ref_ms = 1e3 * ours_s / max(all_cells, 1), 1e3 * ref["seconds"] / max(ref["cells"], 1)
            print(f"\n### against the reference code ({args.reference}), same jobs, same run\n")
            print(md_table(
                ["calibration", "cells", "SSIM evals / cell", "ms / cell", "time ratio"],
                [[f"reference {args.reference} (whole-frame SSIM, display-space models)", str(ref["cells"]),
                  f"{ref['evaluations'] / max(ref['cells'], 1):.2f}", f"{ref_ms:.2f}", "1.0"],
                 ["this tree (FOV SSIM, ceilings, HU CT)", str(all_cells), f"{all_evals / max(all_cells, 1):.2f}",
                  f"{ours_ms:.2f}", f"{ours_ms / max(ref_ms, 1e-9):.2f}x"]],
            ))
        print()
    print("## SSIM speed (one evaluation, uint8)\n")
    print(ssim_speed(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
