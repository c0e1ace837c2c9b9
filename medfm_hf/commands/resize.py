"""``medfm-robust resize IMAGES MASKS --size N --out DIR``: resize image + mask pairs losslessly."""

from __future__ import annotations

import argparse

NAME = "resize"
HELP = ("Resize image + mask pairs to N x N lossless PNGs (area/bicubic for images, nearest-neighbour "
        "for masks) into DIR/images and DIR/masks.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", help="folder of images")
    parser.add_argument("masks", help="folder of masks, paired with the images by stem")
    parser.add_argument("--size", type=int, required=True, help="output side length N in pixels")
    parser.add_argument("--out", required=True, help="output folder (gets images/ and masks/)")
    parser.add_argument("--mask-suffix", default="",
                        help="mask name = <image stem><suffix>, e.g. _mask or _Segmentation (default: none)")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.sources.base import SourceReport
    from medfm_hf.tools import resize_pairs

    report = SourceReport("resize")
    rows = resize_pairs(args.images, args.masks, size=args.size, out_dir=args.out, mask_suffix=args.mask_suffix,
                        report=report)
    print(f"resized {len(rows)} pairs to {args.size}x{args.size} in {args.out}")
    if report.issues:
        print(report.format())
    return 0
