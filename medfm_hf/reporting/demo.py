"""The demo's report: ``medfm-robust report`` over the demo's results, with the demo's build and training
notes on top; ``REPORT.md`` at the top of the demo folder, the full report (HTML, tables, figures) in
``report/``."""

from __future__ import annotations

import os

from medfm_hf.dataset_io import format_table
from medfm_hf.reporting.calibration import by_perturbation
from medfm_hf.reporting.formats import to_markdown
from medfm_hf.reporting.report import ReportOptions, write_report


def demo_notes(out: str, train_info: dict, build: dict, in_band: float, timings: dict) -> str:
    """Markdown: what the demo built and trained, and how long each step took."""
    rep = build["report"]
    per = by_perturbation(rep)
    per["in_band"] = per["in_band"].map(lambda v: f"{v:.1%}")
    per["evals_per_cell"] = per["evals_per_cell"].map(lambda v: f"{v:.2f}")
    per = per.rename(columns={"evals_per_cell": "evaluations per cell", "in_band": "in band"})
    return f"""Everything below was computed on the embedded demo set (synthetic lesions on real and procedural
backgrounds). The numbers exercise the pipeline; they say nothing clinical.

### Benchmark

{build['records']} clean records; {build['shards']} (source x perturbation) shards; {in_band:.1%} of
{int(rep['cells'].sum())} (image, perturbation, level) cells calibrated into their SSIM band. Folder:
`medfm-robust/` (load with `datasets.load_dataset("{out}/medfm-robust", "<config>")`).

{to_markdown(per)}

### Models

- **grabcut**: OpenCV GrabCut initialised with the box (no weights).
- **small_sam**: {train_info['architecture']}, trained {train_info['steps']} steps
  ({train_info['seconds']:.0f} s) on the demo train split, selected on the validation split
  (best validation IoU {train_info['best_val_iou']:.3f}).

### Timings (seconds)

{format_table([{"step": k, "seconds": f"{v:.0f}"} for k, v in timings.items()], markdown=True)}
"""


def write_demo_report(out: str, runs: dict, train_info: dict, build: dict, in_band: float, timings: dict) -> str:
    """``report/`` (HTML, Markdown, tables, figures) over the demo's results folders and ``REPORT.md``;
    ``runs`` maps a model's name in the report to what ``evaluate_segmentation`` returned for it."""
    folders = [res["run"]["arguments"]["output"] for res in runs.values()]
    labels = {res["run"]["arguments"]["output"]: name for name, res in runs.items()}
    path = os.path.join(out, "REPORT.md")
    write_report(folders, os.path.join(out, "report"),
                 ReportOptions(reference=next(iter(runs)), title="medfm_hf demo report"), labels=labels,
                 notes=demo_notes(out, train_info, build, in_band, timings), markdown_copies=(path,))
    return path
