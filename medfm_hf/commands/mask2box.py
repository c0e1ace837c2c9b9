"""``medfm-robust mask2box MASK_DIR --out boxes.json|csv``: mask images -> box coordinates."""

from __future__ import annotations

import argparse

NAME = "mask2box"
HELP = "Write the bounding box [x0, y0, x1, y1] of every mask in a folder to a JSON or CSV file."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mask_dir", help="folder of mask images (PNG, JPEG, BMP, TIFF)")
    parser.add_argument("--out", required=True, help="output file, .json or .csv")
    parser.add_argument("--threshold", type=int, default=127,
                        help="foreground is > threshold for JPEG / non-binary masks (default 127)")
    parser.add_argument("--per-component", action="store_true",
                        help="one box per connected lesion instead of one box per mask")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.sources.base import SourceReport
    from medfm_hf.tools import masks_to_boxes, write_boxes

    report = SourceReport("mask2box")
    rows = masks_to_boxes(args.mask_dir, threshold=args.threshold, per_component=args.per_component,
                          report=report)
    write_boxes(rows, args.out)
    n_files = len({r["file"] for r in rows})
    print(f"wrote {len(rows)} boxes for {n_files} masks to {args.out}")
    if report.issues:
        print(report.format())
    return 0
