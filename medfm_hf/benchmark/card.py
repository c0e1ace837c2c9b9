"""The dataset card (``README.md`` with YAML ``configs:``), generated from the data."""

from __future__ import annotations

from collections import Counter

import numpy as np

from medfm_hf import __version__
from medfm_hf.benchmark import layout
from medfm_hf.io import atomic_write_text
from medfm_hf.records import SPLITS, Record


def _bands_text() -> str:
    from medfm_hf.calibration import BANDS

    lines = ["| level | SSIM to the clean image |", "|---|---|"]
    lines += [f"| {lv} | {lo:.2f} – {hi:.2f} |" for lv, (lo, hi) in sorted(BANDS.items())]
    return "\n".join(lines)


def _gallery(out: str, infos: list[dict]) -> list[tuple[str, str]]:
    """One strip per perturbation (clean + levels) from the built data, ``gallery/<name>.png``."""
    import cv2
    import pyarrow.parquet as pq

    from medfm_hf.io import atomic_write_bytes
    from medfm_hf.records import decode_png, read_records_parquet

    made = []
    done = set()
    clean = {r.image_id: r for r in read_records_parquet(layout.path(out, layout.clean_file("test")))}
    for info in sorted(infos, key=lambda i: (i["perturbation"], i["source"])):
        p = info["perturbation"]
        if p in done or not info["cells"]:
            continue
        image_id = sorted(c["image_id"] for c in info["cells"])[0]
        tiles = [clean[image_id].image]
        labels = ["clean"]
        levels = sorted({c["level"] for c in info["cells"]})
        for lv in levels:
            file = layout.path(out, layout.perturbed_file(p, lv, info["source"]))
            t = pq.read_table(file, columns=["image_id", "image", "ssim"]).to_pylist()
            row = next(r for r in t if r["image_id"] == image_id)
            tiles.append(decode_png(row["image"]["bytes"]))
            labels.append(f"L{lv} {row['ssim']:.2f}")
        tiles = [np.dstack([t] * 3) if t.ndim == 2 else t for t in tiles]
        tiles = [cv2.resize((t / (257.0 if t.dtype == np.uint16 else 1.0)).astype(np.uint8), (160, 160),
                            interpolation=cv2.INTER_AREA) for t in tiles]
        for t, lab in zip(tiles, labels):
            cv2.putText(t, lab, (4, 152), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        strip = np.concatenate(tiles, axis=1)
        rel = layout.gallery_file(p)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        if ok:
            atomic_write_bytes(layout.path(out, rel), buf.tobytes())
            made.append((p, rel))
        done.add(p)
    return made


def write_card(out: str, records: list[Record], infos: list[dict], settings) -> list[str]:
    """Write ``README.md`` (and the gallery it shows); returns the relative paths written."""
    from medfm_hf.benchmark.report import config_table
    from medfm_hf.dataset_io import format_table, modality_table
    from medfm_hf.sources import get_source

    table = config_table(infos)
    configs = list(table["config"])
    clean_splits = [s for s in SPLITS if any(r.split == s for r in records)]
    src_counts = Counter(r.source for r in records)
    src_lines = []
    for name in sorted(src_counts):
        spec = get_source(name)
        src_lines.append(f"| {name} | {src_counts[name]} | {spec.licence} | {spec.reference} |")
    gallery = _gallery(out, infos)
    t = table.copy()
    t["in_band_rate"] = t["in_band_rate"].map(lambda v: f"{v:.0%}")
    t["mean_ssim"] = t["mean_ssim"].map(lambda v: f"{v:.3f}")
    example = configs[0] if configs else "clean"
    card = f"""---
license: other
pretty_name: medfm-robust
task_categories:
- image-segmentation
- visual-question-answering
tags:
- medical
- robustness
- benchmark
{layout.yaml_configs(clean_splits, configs)}
---

# medfm-robust

A robustness benchmark for medical foundation models: the clean images of the sources below, and every
applicable perturbation at {len(settings.levels)} severity levels, each **calibrated per image** so that its
SSIM to the clean image falls in the level's band. One config per perturbation and level.

## Load

```python
from datasets import load_dataset
clean = load_dataset("path/to/this/folder", "clean")            # train / validation / test
ds = load_dataset("path/to/this/folder", "{example}", split="test")
row = ds[0]
row["image"], row["mask"], row["bbox"], row["level"], row["ssim"], row["in_band"]
```

or with medfm_hf: `from medfm_hf.benchmark import load_config, list_configs`.

`manifest.json` lists every file with its size and SHA-256 (`medfm-robust verify FOLDER` checks them);
`bad_inputs.json` lists the inputs that were skipped or flagged, with reasons.

## Clean data

{format_table(modality_table(records), markdown=True)}

## Calibration

{_bands_text()}

For each (image, perturbation) one seed is derived from (global seed {settings.seed}, image id,
perturbation); every strength tried uses a fresh generator from that seed, so the five levels show the same
artifact growing. A coarse sweep over the strength range, then secant/bisection steps inside each bracket,
finds all levels in one search. SSIM follows Wang et al. 2004 with scikit-image's defaults (7x7 uniform
window), data range fixed by the dtype (never per-image min-max), RGB as the mean over channels, measured on
the image exactly as stored. A level whose band cannot be reached keeps the closest strength with
`in_band = false` (rows are never silently duplicated). Geometric perturbations move `mask`, `bbox` and
`target_bbox` with the image. Per-cell details: `calibration_report.csv`.

Fields of a perturbed row: the clean row's fields plus `perturbation`, `level`, `strength`, `ssim`,
`in_band`, `seed`, `evaluations`.

## Configs

{format_table(t.to_dict("records"), markdown=True) if len(t) else "(none)"}

## Gallery

{chr(10).join(f"**{p}**{chr(10)}{chr(10)}![{p}]({rel}){chr(10)}" for p, rel in gallery)}

## Sources and licences

| source | records | licence | reference |
|---|---|---|---|
{chr(10).join(src_lines)}

Lesions in the `demo` source are synthetic (see its documentation).

## Citation

```bibtex
@misc{{medfm_hf,
  title  = {{medfm\\_hf: a Hugging Face benchmark for the robustness of medical foundation models}},
  year   = {{2026}},
  note   = {{medfm_hf {__version__}}}
}}
```

Built by `medfm-robust build` (medfm_hf {__version__}).
"""
    atomic_write_text(layout.path(out, layout.CARD), card)
    return [layout.CARD] + [rel for _p, rel in gallery]
