"""The perturbation gallery: every registered perturbation at levels 1-5 on a demo image.

Writes ``docs/perturbations/<name>.png`` (one strip per perturbation: the clean image and the five
calibrated levels, each labelled with its FOV SSIM and strength; for perturbations that move content the
moved mask is outlined in green), ``docs/perturbations/fov_<modality>.png`` (one example per modality
with its field of view outlined in cyan, shown at the top of each modality's section and all together
under the base family) and ``docs/perturbations.md`` (the catalog table, each perturbation's docstring
summary, ceiling and declared side effects, and its strip). The registry is walked, so perturbations
added later are picked up. ``scripts/make_gallery.py`` is the command-line entry point.

Usage::

    python scripts/make_gallery.py                    # all perturbations -> docs/
    python scripts/make_gallery.py --names jpeg,rotate --out /tmp/gallery
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from medfm_hf import MODALITIES
from medfm_hf.calibration import BANDS, calibrate
from medfm_hf.perturbations import get_perturbation, list_perturbations
from medfm_hf.perturbations.ct import ct_window
from medfm_hf.sources.demo import load_demo

logger = logging.getLogger(__name__)

TILE = 160
LABEL_H = 34
COLOUR_MODALITIES = ("dermoscopy", "endoscopy", "fundus", "pathology")
# Which demo modality shows each base perturbation (variety across the gallery).
BASE_MODALITY = {
    "gaussian_noise": "xray", "salt_pepper": "ct", "speckle_noise": "ultrasound", "gaussian_blur": "mri",
    "motion_blur": "endoscopy", "defocus_blur": "fundus", "jpeg": "pathology", "pixelate": "oct",
    "contrast": "angiography", "brightness": "dermoscopy", "saturation": "pathology", "rotate": "ct",
    "scale": "mri", "translate": "xray",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Render the perturbation gallery into docs/.")
    ap.add_argument("--out", default="docs", help="docs folder (default: docs)")
    ap.add_argument("--names", default="", help="comma list of perturbations (default: every registered one)")
    ap.add_argument("--seed", type=int, default=0, help="global calibration seed (default 0)")
    return ap.parse_args(argv)


def pick_record(name: str, records, index: int):
    """A demo test record of a modality the perturbation applies to (RGB for colour-only ones)."""
    p = get_perturbation(name)
    if set(p.modalities) == set(MODALITIES):
        wanted = BASE_MODALITY.get(name, MODALITIES[index % len(MODALITIES)])
        if p.colour_only and wanted not in COLOUR_MODALITIES:
            wanted = "pathology"
        order = [wanted, *p.modalities]
    else:
        order = list(p.modalities)
    for modality in order:
        for rec in records:
            if rec.modality == modality and p.applies_to(rec.modality, rec.image):
                return rec
    raise SystemExit(f"no demo test image fits {name} (modalities {p.modalities})")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _tile(image: np.ndarray, mask: np.ndarray | None, label: str, bad: bool) -> Image.Image:
    rgb = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    if rgb.dtype == np.uint16:
        rgb = (rgb // 257).astype(np.uint8)  # display only: the dtype's range, no min-max
    rgb = np.ascontiguousarray(rgb)
    if mask is not None:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        rgb = cv2.drawContours(rgb.copy(), contours, -1, (0, 255, 0), 1)
    tile = Image.fromarray(cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA))
    canvas = Image.new("RGB", (TILE, TILE + LABEL_H), "white")
    canvas.paste(tile, (0, LABEL_H))
    draw = ImageDraw.Draw(canvas)
    draw.multiline_text((4, 2), label, fill=(190, 0, 0) if bad else (0, 0, 0), font=_font(12), spacing=2)
    return canvas


def fov_tile(rec) -> Image.Image:
    """One demo image with its field of view outlined in cyan (and the lesion mask in green)."""
    rgb = rec.image if rec.image.ndim == 3 else np.stack([rec.image] * 3, axis=-1)
    rgb = np.ascontiguousarray(rgb if rgb.dtype == np.uint8 else (rgb // 257).astype(np.uint8))
    contours, _ = cv2.findContours(rec.field_of_view().astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rgb = cv2.drawContours(rgb.copy(), contours, -1, (0, 255, 255), 2)
    fov_pct = 100.0 * float(rec.field_of_view().mean())
    return _tile(rgb, rec.mask, f"{rec.modality}: FOV {fov_pct:.0f} %\n{rec.meta.get('fov', 'detected')}", False)


def fov_strip(records) -> Image.Image:
    tiles = [fov_tile(r) for r in records]
    strip = Image.new("RGB", (len(tiles) * (TILE + 4) - 4, TILE + LABEL_H), "white")
    for i, t in enumerate(tiles):
        strip.paste(t, (i * (TILE + 4), 0))
    return strip


def render(name: str, rec, seed: int):
    """Calibrate ``name`` on ``rec`` (FOV SSIM, CT window, ceiling) and return (strip image, results)."""
    p = get_perturbation(name)
    results = calibrate(rec.image, name, image_id=rec.image_id, seed=seed, mask=rec.mask, fov=rec.field_of_view(),
                        window=ct_window(rec.meta) if rec.modality == "ct" else None)
    show_mask = p.geometric and rec.mask is not None
    tiles = [_tile(rec.image, rec.mask if show_mask else None, f"clean\n{rec.image_id}", False)]
    for r in results:
        flag = "" if r.in_band else f" ({r.reason})"
        label = f"L{r.level}  SSIM {r.ssim:.3f}{flag}\nstrength {r.strength:.4g}"
        tiles.append(_tile(r.image, r.mask if show_mask else None, label, not r.in_band))
    strip = Image.new("RGB", (len(tiles) * (TILE + 4) - 4, TILE + LABEL_H), "white")
    for i, t in enumerate(tiles):
        strip.paste(t, (i * (TILE + 4), 0))
    return strip, results


FAMILY_MODALITY = {"angiography": "angiography", "ct": "ct", "dermoscopy": "dermoscopy", "endoscopy": "endoscopy",
                   "fundus": "fundus", "mri": "mri", "oct": "oct", "pathology": "pathology",
                   "ultrasound": "ultrasound", "xray": "xray"}


def summary(name: str) -> str:
    """First paragraph of the perturbation's docstring, on one line."""
    doc = inspect.getdoc(get_perturbation(name).fn) or get_perturbation(name).description
    return " ".join(doc.split("\n\n")[0].split())


def markdown(entries: list[tuple[str, str, list]]) -> str:
    from medfm_hf.perturbations.registry import catalog_rows

    rows = {r["name"]: r for r in catalog_rows()}
    out = [
        "# Perturbation gallery",
        "",
        "Every registered perturbation on a demo test image, calibrated per image to the five SSIM bands",
        "(L1 0.90-0.98, L2 0.80-0.90, L3 0.70-0.80, L4 0.60-0.70, L5 0.50-0.60; see",
        "[perturbation_benchmark.md](perturbation_benchmark.md) for hit rates over the whole demo set).",
        "Each strip shows the clean image and levels 1-5 with the measured SSIM (over the field of view) and",
        "the strength the calibrator chose; a red label marks a band the perturbation could not reach on that",
        "image within its physical ceiling, with the reason (`ceiling`, `saturated`, `discrete`; the closest",
        "strength is shown instead). Perturbations that move content outline the moved mask in green. Each",
        "modality's section opens with one example of its field of view (cyan outline); per-level side-effect",
        "measures for the whole demo set are in [physics_audit.md](physics_audit.md).",
        "",
        "Regenerate with `python scripts/make_gallery.py` (writes this page and `docs/perturbations/`).",
        "",
        "## Using them",
        "",
        "```bash",
        "medfm-robust perturbations --modality ct        # the catalog (base + CT-specific)",
        "medfm-robust perturb IMAGE.png --name jpeg --level 3 --out jpeg_l3.png",
        "```",
        "",
        "```python",
        "import numpy as np",
        "from medfm_hf.calibration import calibrate",
        "from medfm_hf.perturbations import get_perturbation",
        "from medfm_hf.sources.demo import load_demo",
        "from medfm_hf.ssim import ssim",
        "",
        "rec = load_demo(split=\"test\")[0]",
        "results = calibrate(rec.image, \"gaussian_noise\", image_id=rec.image_id, seed=0, mask=rec.mask,",
        "                    fov=rec.fov)",
        "for r in results:",
        "    print(r.level, round(r.strength, 4), round(r.ssim, 3), round(r.ssim_frame, 3), r.in_band, r.reason)",
        "",
        "# every result is reproducible from (strength, seed) alone",
        "r = results[2]",
        "again = get_perturbation(\"gaussian_noise\")(rec.image, r.strength, np.random.default_rng(r.seed))",
        "assert np.array_equal(again, r.image) and abs(ssim(rec.image, again, fov=rec.fov) - r.ssim) < 1e-12",
        "```",
        "",
        "## How a level is found",
        "",
        "- **SSIM** (`medfm_hf.ssim`) equals `skimage.metrics.structural_similarity` with its defaults",
        "  (7x7 uniform window, K1 0.01, K2 0.03, sample covariance) to 1e-6; `data_range` comes from the",
        "  dtype (255 for uint8, 65535 for uint16; pass `data_range=` for 16-bit sources with a narrower",
        "  range), never from a per-image min-max; RGB is the mean of the per-channel SSIMs. It is measured on",
        "  the stored (quantised) output. The band SSIM (`ssim`) is the SSIM map averaged over the record's",
        "  field of view, eroded by the window's half-width (the windows lying entirely inside it);",
        "  `ssim_frame` is the whole-frame value of the same output. `SSIMReference` keeps the clean image's",
        "  statistics to score many candidates against it.",
        "- **One seed per (global seed, image_id, perturbation)** (`derive_seed`, SHA-256). Every trial",
        "  calls the perturbation with a fresh `np.random.default_rng(seed)`, so the random draws are the same",
        "  for every strength: the five levels show the same artifact growing.",
        "- **One search for all levels**: a coarse sweep from the top of the strength range down in",
        "  factors of 4, then a secant search in (log strength, log(1 - SSIM)) inside each level's bracket,",
        "  aiming at the band centre and stopping as soon as a trial is in band (bisection guards slow",
        "  steps). Each SSIM evaluation is charged to one level (`r.evaluations`).",
        "- **Physical ceilings**: the search never exceeds a perturbation's declared ceiling (the strongest",
        "  physically plausible strength, with its reason in the registry and below).",
        "- **Unreachable bands** give `in_band=False` with the closest strength, a `reason` (`ceiling`: even",
        "  the ceiling is too mild; `saturated`: the effect stops growing before the range's top; `discrete`:",
        "  SSIM jumps over the band, e.g. JPEG quality) and a logged warning; never a silent copy of another",
        "  level. Unreached levels are data.",
        "- **Constant images** are refused by `calibrate` (SSIM is defined for them, but there is no",
        "  structure whose loss the bands measure); single perturbations still accept them.",
        "",
        "## Catalog",
        "",
        "| name | family | modalities | strength | notes | description |",
        "|---|---|---|---|---|---|",
    ]
    for name, _, _ in entries:
        r = rows[name]
        out.append(f"| [{name}](#{name}) | {r['family']} | {r['modalities']} | {r['strength']} | {r['notes']} "
                   f"| {r['description']} |")
    out.append("")
    family = None
    for name, rec_id, results in entries:
        p = get_perturbation(name)
        fam = p.family
        if fam != family:
            family = fam
            out += [f"## {fam}", ""]
            if fam == "base":
                out += ["Field of view of one demo image per modality (cyan; green: the lesion mask):", "",
                        "![the field of view of each modality](perturbations/fov_all.png)", ""]
            elif fam in FAMILY_MODALITY:
                out += [f"Field of view of a {fam} example (cyan; green: the lesion mask):", "",
                        f"![{fam} field of view](perturbations/fov_{fam}.png)", ""]
        levels = ", ".join(
            f"L{r.level} {r.ssim:.3f}{'' if r.in_band else ' (out of band ' + '-'.join(map(str, BANDS[r.level])) + ')'}"
            for r in results
        )
        extra = []
        if p.ceiling is not None:
            extra.append(f"Ceiling: strength <= {p.max_strength:g} ({p.ceiling_note}).")
        if p.side_effects:
            extra.append(f"Declared side effects ({', '.join(sorted(p.side_effects))}): {p.side_effect_note}.")
        if p.pending:
            extra.append(f"Pending defect ({', '.join(sorted(p.pending))}): {p.pending_note}.")
        out += [f"### {name}", "", summary(name), ""]
        if extra:
            out += [" ".join(extra), ""]
        out += [f"![{name} at levels 1-5 on {rec_id}](perturbations/{name}.png)", "",
                f"SSIM on `{rec_id}`: {levels}.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    names = [n.strip() for n in args.names.split(",") if n.strip()] or list_perturbations()
    names = sorted(names, key=lambda n: (get_perturbation(n).family != "base", get_perturbation(n).family, n))
    out_dir = Path(args.out)
    pics = out_dir / "perturbations"
    pics.mkdir(parents=True, exist_ok=True)
    records = load_demo(split="test")
    first = {}
    for rec in records:
        first.setdefault(rec.modality, rec)
    fov_strip([first[m] for m in MODALITIES if m in first]).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT).save(pics / "fov_all.png", optimize=True)
    for m in MODALITIES:
        if m in first:
            fov_tile(first[m]).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                pics / f"fov_{m}.png", optimize=True)
    entries = []
    for i, name in enumerate(tqdm(names, desc="gallery", file=sys.stderr)):
        rec = pick_record(name, records, i)
        strip, results = render(name, rec, args.seed)
        # 256-colour palette: the strips are for looking at and stay small in the repository
        strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(pics / f"{name}.png", optimize=True)
        entries.append((name, rec.image_id, results))
    (out_dir / "perturbations.md").write_text(markdown(entries) + "\n")
    if not args.names:  # a full run: drop strips of perturbations no longer registered
        for stale in sorted(pics.glob("*.png")):
            if stale.stem not in names and not stale.stem.startswith("fov_"):
                stale.unlink()
                logger.info("removed stale %s", stale)
    missed = sum(not r.in_band for _, _, rs in entries for r in rs)
    print(f"wrote {len(entries)} strips to {pics} and {out_dir / 'perturbations.md'} "  # noqa: T201 (CLI output)
          f"({missed} of {5 * len(entries)} levels out of band)")
    return 0
