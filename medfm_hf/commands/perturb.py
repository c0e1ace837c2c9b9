"""``medfm-robust perturb``: apply one perturbation at a calibrated severity level to one image file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NAME = "perturb"
HELP = "Perturb one image at a severity level (strength calibrated to the level's SSIM band) and save it."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="input image (PNG/TIFF/JPEG; 8- or 16-bit, grey or RGB)")
    parser.add_argument("--name", required=True, help="perturbation name (see `medfm-robust perturbations`)")
    parser.add_argument("--level", type=int, required=True, choices=[1, 2, 3, 4, 5], help="severity level 1-5")
    parser.add_argument("--seed", type=int, default=0, help="global seed (with the file name and perturbation "
                                                            "it fixes the random draws; default 0)")
    parser.add_argument("--out", required=True, help="output image path (use .png to keep it lossless)")


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8/16-bit grey or RGB image as ``(H, W)`` / ``(H, W, 3)``; clear errors otherwise."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} does not exist")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read {str(path)!r} as an image; use a PNG, TIFF or JPEG file")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)  # refused later with a clear message
    return img


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write ``image`` (RGB or grey, 8/16-bit) losslessly for PNG/TIFF."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), out):
        raise ValueError(f"cannot write {str(path)!r}; use a .png or .tif extension")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.calibration import BANDS, calibrate

    image = read_image(args.image)
    (result,) = calibrate(image, args.name, image_id=Path(args.image).name, seed=args.seed, levels=(args.level,))
    write_image(args.out, result.image)
    lo, hi = BANDS[args.level]
    status = "in band" if result.in_band else "NOT in band (closest reachable)"
    print(f"{args.name} level {args.level}: strength {result.strength:.6g}, SSIM {result.ssim:.4f} "
          f"(band {lo:.2f}-{hi:.2f}, {status}), {result.evaluations} SSIM evaluations")
    print(f"saved {args.out}")
    return 0
