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


MAX_PIXELS = 64_000_000  # calibrating a 64-megapixel image needs several GB (about 60 bytes per pixel)
BYTES_PER_PIXEL = 60  # measured peak of calibrate() per pixel (8000x8000 grey: 3.9 GB)
EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp")
WRITABLE = (".png", ".tif", ".tiff", *EIGHT_BIT_ONLY)


def check_output(out: str | Path, image_path: str | Path, dtype: np.dtype) -> None:
    """Refuse an output that is the input, has no usable extension, or cannot hold the bit depth."""
    out, image_path = Path(out), Path(image_path)
    ext = out.suffix.lower()
    if ext not in WRITABLE:
        raise ValueError(f"--out {str(out)!r} needs an image extension: {', '.join(WRITABLE)} (.png keeps it lossless)")
    if out.exists() and out.resolve() == image_path.resolve():
        raise ValueError(f"--out {str(out)!r} is the input image; write the perturbed image to another file")
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a file name")
    if np.dtype(dtype) == np.uint16 and ext in EIGHT_BIT_ONLY:
        raise ValueError(f"the input is 16-bit but {ext} holds 8 bits; write .png or .tif to keep the bit depth")


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write ``image`` (RGB or grey, 8/16-bit) atomically; losslessly for PNG/TIFF."""
    import cv2

    from medfm_hf.io import atomic_write_bytes

    path = Path(path)
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(path.suffix.lower(), out)
    if not ok:
        raise ValueError(f"cannot write {str(path)!r}; use a .png or .tif extension")
    atomic_write_bytes(path, buf.tobytes())


def run(args: argparse.Namespace) -> int:
    from medfm_hf.calibration import BANDS, calibrate
    from medfm_hf.perturbations import get_perturbation

    check_output(args.out, args.image, np.uint8)  # extension and "not the input", before reading
    image = read_image(args.image)
    check_output(args.out, args.image, image.dtype)
    pixels = image.shape[0] * image.shape[1]
    if pixels > MAX_PIXELS:
        raise ValueError(f"{args.image} has {pixels / 1e6:.0f} megapixels; calibrating it would need about "
                         f"{pixels * BYTES_PER_PIXEL / 2**30:.1f} GiB. Downscale it first (at most "
                         f"{MAX_PIXELS // 1_000_000} megapixels, e.g. `medfm-robust resize`)")
    (result,) = calibrate(image, args.name, image_id=Path(args.image).name, seed=args.seed, levels=(args.level,))
    write_image(args.out, result.image)
    lo, hi = BANDS[args.level]
    status = "in band" if result.in_band else (
        f"NOT in band: {result.reason}; the closest strength within the physical ceiling "
        f"{get_perturbation(args.name).max_strength:g} is used")
    print(f"{args.name} level {args.level}: strength {result.strength:.6g}, SSIM {result.ssim:.4f} "
          f"(band {lo:.2f}-{hi:.2f}, {status}), {result.evaluations} SSIM evaluations")
    print(f"saved {args.out}")
    return 0
