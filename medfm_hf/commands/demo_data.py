"""``medfm-robust demo-data``: write the embedded demo set as a clean Hub-ready dataset folder."""

from __future__ import annotations

import argparse
import os

NAME = "demo-data"
HELP = "Write the embedded demo dataset (all ten modalities, synthetic lesions) as a clean dataset folder."

CARD = """---
license: other
pretty_name: medfm_hf demo set
task_categories:
- image-segmentation
- visual-question-answering
- image-to-text
configs:
- config_name: clean
  data_files:
{data_files}
---

# medfm_hf demo set

A small, fully offline dataset that exercises every part of the medfm_hf pipeline: {n} images in all ten
modalities, each with an exact segmentation mask, a box, a four-option multiple-choice question, a caption
and a grounding target.

**The lesions are synthetic.** Each image is a real background (CT, MRI, X-ray and ultrasound from the
DICOM test files shipped with `pydicom-data`/`pydicom`; fundus and pathology from scikit-image's bundled
images) or a procedural one (dermoscopy, endoscopy, OCT, angiography), with a synthetic lesion inserted
where its mask says. The Shepp-Logan phantom records use one of the phantom's own ellipses as the mask.
Use the set to test software, never to judge clinical performance.

16-bit sources are windowed to 8 bits; the window is in each row's `meta` (JSON).

## Load

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder", "clean")
print(ds["test"][0]["modality"], ds["test"][0]["bbox"])
```

## Contents

{table}

## Sources and licences

| source | licence |
|---|---|
{licences}

Made by `medfm-robust demo-data` (medfm_hf {version}).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; existing files are replaced)")


def run(args: argparse.Namespace) -> int:
    from medfm_hf import __version__
    from medfm_hf.dataset_io import atomic_write_text, format_table, modality_table, write_clean_config
    from medfm_hf.sources.demo import LICENCES, load_demo

    records = load_demo()
    counts = write_clean_config(records, args.out)
    data_files = "\n".join(f"  - split: {s}\n    path: data/clean/{s}-*.parquet" for s in counts)
    rows = modality_table(records)
    card = CARD.format(
        data_files=data_files, n=len(records),         table=format_table(rows, markdown=True), version=__version__,
        licences="\n".join(f"| {k} | {v} |" for k, v in LICENCES.items()),
    )
    atomic_write_text(os.path.join(args.out, "README.md"), card)
    print(format_table(rows))
    print(f"wrote {sum(counts.values())} records ({', '.join(f'{k} {v}' for k, v in counts.items())}) to {args.out}")
    return 0
