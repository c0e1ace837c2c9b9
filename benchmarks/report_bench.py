"""How long ``medfm-robust report`` takes at paper scale, and the matrix bootstrap against the textbook loop.

    python benchmarks/report_bench.py [--images 600] [--models 3] [--perturbations 40] [--n-boot 1000]

1. Synthetic results folders in evaluate.py's format: ``--models`` models, ``--images`` clean test images in
   two modalities, ``--perturbations`` perturbations at five levels (and FGSM/PGD for the first model).
2. One cell (a model's drop under one perturbation, mean over levels) bootstrapped twice with the same seed:
   the textbook loop (draw image indices, recompute the means) and the matrix form the report uses; prints
   both intervals, their difference and the times.
3. The whole report (every table with intervals, every figure, HTML) timed, then the leaderboard.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from medfm_hf.dataset_io import format_table  # noqa: E402
from medfm_hf.reporting import ReportOptions, load_results, write_report  # noqa: E402
from medfm_hf.reporting.leaderboard import write_leaderboard  # noqa: E402
from medfm_hf.reporting.tables import TaskAnalysis  # noqa: E402


def make_folder(folder: str, model: str, images: int, perts: list[str], attacks: bool, seed: int) -> int:
    import pandas as pd

    from medfm_hf.evaluation.results import COLUMNS

    rng = np.random.default_rng(seed)
    ids = np.array([f"bench/{m}_{i:05d}" for m in ("ct", "dermoscopy") for i in range(images // 2)])
    mods = np.array([i.split("/")[1].split("_")[0] for i in ids])
    clean = np.clip(rng.normal(0.7, 0.15, len(ids)), 0, 1)
    frames = [pd.DataFrame({"image_id": ids, "modality": mods, "kind": "clean", "name": "clean", "level": 0,
                            "iou": clean, "clean_iou": clean})]
    conds = [("perturbation", p) for p in perts] + ([("attack", "fgsm"), ("attack", "pgd")] if attacks else [])
    for kind, name in conds:
        sens = rng.uniform(0.0, 0.05)
        for lv in range(1, 6):
            v = np.clip(clean - sens * lv + rng.normal(0, 0.03, len(ids)), 0, 1)
            frames.append(pd.DataFrame({"image_id": ids, "modality": mods, "kind": kind, "name": name, "level": lv,
                                        "iou": v, "clean_iou": clean, "epsilon": 2 * lv / 255 if kind == "attack"
                                        else np.nan}))
    df = pd.concat(frames, ignore_index=True)
    df["source"] = "bench"
    df["dice"] = 2 * df["iou"] / (1 + df["iou"])
    df["clean_dice"] = 2 * df["clean_iou"] / (1 + df["clean_iou"])
    df["iou_drop"] = df["clean_iou"] - df["iou"]
    df["dice_drop"] = df["clean_dice"] - df["dice"]
    os.makedirs(folder, exist_ok=True)
    df.reindex(columns=COLUMNS).to_parquet(os.path.join(folder, f"{model}_results.parquet"), index=False)
    return len(df)


def loop_bootstrap(clean: np.ndarray, pert: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """The textbook paired bootstrap of mean over levels of (clean - perturbed): pert is (images, levels)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clean), size=(n_boot, len(clean)))
    vals = [np.mean([clean[i].mean() - pert[i, k].mean() for k in range(pert.shape[1])]) for i in idx]
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--perturbations", type=int, default=40)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    perts = [f"pert_{i:02d}" for i in range(a.perturbations)]
    with tempfile.TemporaryDirectory() as tmp:
        rows, folders = 0, []
        for m in range(a.models):
            folders.append(os.path.join(tmp, f"model{m}"))
            rows += make_folder(folders[-1], f"model{m}", a.images, perts, m == 0, seed=m)
        print(f"{a.models} models x {a.images} images x ({a.perturbations} perturbations x 5 levels + clean): "
              f"{rows} rows, {a.n_boot} resamples")

        res = load_results(folders[:1])
        s = res.samples
        t = time.perf_counter()
        an = TaskAnalysis(s, a.n_boot, np.random.default_rng(7))
        est = an.estimate(an.drop_stat("model0", "perturbation", perts[0]))
        t_matrix = time.perf_counter() - t
        clean = s[s["kind"] == "clean"].set_index("image_id").loc[an.images, "score"].to_numpy()
        pert = s[s["name"] == perts[0]].pivot(index="image_id", columns="level", values="score").loc[an.images]
        t = time.perf_counter()
        lo, hi = loop_bootstrap(clean, pert.to_numpy(), a.n_boot, 7)
        t_loop = time.perf_counter() - t
        print(format_table([
            {"method": "textbook loop (one cell)", "drop CI": f"[{lo:.6f}, {hi:.6f}]", "seconds": f"{t_loop:.2f}"},
            {"method": "matrix (every cell of the model)", "drop CI": f"[{est.lo:.6f}, {est.hi:.6f}]",
             "seconds": f"{t_matrix:.2f}"}]))
        print(f"max |difference| of the bounds: {max(abs(lo - est.lo), abs(hi - est.hi)):.2e}")

        t = time.perf_counter()
        out = write_report(folders, os.path.join(tmp, "report"), ReportOptions(reference="model0", n_boot=a.n_boot))
        t_report = time.perf_counter() - t
        t = time.perf_counter()
        lb = write_leaderboard(folders, os.path.join(tmp, "lb"), n_boot=a.n_boot)
        t_lb = time.perf_counter() - t
        size = os.path.getsize(out["html"]) / 1e6
        print(format_table([
            {"step": "report (tables, figures, HTML)", "seconds": f"{t_report:.1f}",
             "output": f"{len(out['meta']['tables'])} tables, {len(out['figures'])} figures, html {size:.1f} MB"},
            {"step": "leaderboard", "seconds": f"{t_lb:.1f}", "output": f"{len(lb['rows'])} rows"}]))


if __name__ == "__main__":
    main()
