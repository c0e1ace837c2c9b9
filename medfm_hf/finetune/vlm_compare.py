"""Zero-shot vs fine-tuned grounding on a benchmark's test split: clean Acc@0.5 and the drop per perturbation
and level, in one command::

    python -m medfm_hf.finetune.vlm_compare --finetuned runs/medgemma_lora --dataset medfm-robust \\
        --output results/medgemma_lora_vs_zero_shot

The zero-shot model is the fine-tune's own base (same family, checkpoint, options, verified by its weight
fingerprint), so the two columns differ only by the adapter. Both answer the same prompt
(:func:`~medfm_hf.finetune.vlm_data.grounding_question` + the family's box instruction) and are parsed in the
family's box convention; an unparsable answer is a miss (IoU 0) in the same denominator. Targets of
perturbed rows are the benchmark's moved boxes (geometric perturbations move ``target_bbox``).

This is an evaluation: it reads ``clean/test`` and the perturbed configs (never used by training). When the
grounding evaluator (``evaluate.py --task grounding``) is available it should produce the same numbers; this
module is the stand-alone comparison until then.
"""

from __future__ import annotations

import argparse
import glob
import logging
import math
import os
import re
import sys
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["compare_grounding", "format_comparison", "grounding_eval_configs", "score_grounding"]

_CONFIG_RE = re.compile(r"^(?P<pert>.+)_l(?P<level>[1-5])$")


def grounding_eval_configs(dataset: str, configs: str = "all") -> list[tuple[str, str | None, int | None]]:
    """``[(config, perturbation, level), ...]``: ``clean`` first, then every perturbed config that has a test
    split (``configs`` = ``all``, ``none`` or comma-separated config names)."""
    found = []
    for d in sorted(glob.glob(os.path.join(dataset, "data", "*"))):
        name = os.path.basename(d)
        m = _CONFIG_RE.match(name)
        if m and glob.glob(os.path.join(d, "test-*.parquet")):
            found.append((name, m["pert"], int(m["level"])))
    if configs == "none":
        chosen = []
    elif configs == "all":
        chosen = found
    else:
        want = [c.strip() for c in configs.split(",") if c.strip()]
        known = {c for c, _, _ in found}
        bad = [c for c in want if c not in known]
        if bad:
            raise ValueError(f"config {bad[0]!r} has no test split in {dataset}; available: {', '.join(sorted(known))}")
        chosen = [f for f in found if f[0] in want]
    if not glob.glob(os.path.join(dataset, "data", "clean", "test-*.parquet")):
        raise ValueError(f"{dataset} has no clean/test split (data/clean/test-*.parquet)")
    return [("clean", None, None), *chosen]


def _test_rows(dataset: str, config: str, limit: int = 0) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    cols = ["image_id", "task", "image", "question", "target_bbox", "meta"]
    for f in sorted(glob.glob(os.path.join(dataset, "data", config, "test-*.parquet"))):
        rows += pq.read_table(f, columns=cols).to_pylist()
    rows = sorted((r for r in rows if r.get("target_bbox")), key=lambda r: r["image_id"])
    return rows[:limit] if limit > 0 else rows


def score_grounding(vlm: Any, rows: list[dict], *, max_new_tokens: int = 64, batch_size: int = 8) -> dict:
    """Acc@0.5, Acc@0.3, mean IoU and unparsable rate of ``vlm`` on grounding ``rows``."""
    from medfm_hf.finetune.vlm_data import grounding_question, to_rgb8
    from medfm_hf.metrics.boxes import box_iou
    from medfm_hf.records import decode_png
    from medfm_hf.vlm import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    ious, bad = [], 0
    for k in range(0, len(rows), batch_size):
        chunk = rows[k:k + batch_size]
        images = [to_rgb8(decode_png(r["image"]["bytes"])) for r in chunk]
        resp = vlm.generate([(im, vlm.grounding_prompt(grounding_question(r))) for im, r in zip(images, chunk)], cfg)
        for im, r, a in zip(images, chunk, resp):
            h, w = im.shape[:2]
            parsed = vlm.box_convention.parse(a.text, (w, h)) if a.ok else None
            bad += parsed is None
            ious.append(box_iou(parsed.box, [float(v) for v in r["target_bbox"]]) if parsed is not None else 0.0)
    arr = np.asarray(ious, dtype=np.float64)
    n = len(arr)
    return {"n": n, "acc@0.5": float((arr >= 0.5).mean()) if n else math.nan,
            "acc@0.3": float((arr >= 0.3).mean()) if n else math.nan,
            "mean_iou": float(arr.mean()) if n else math.nan, "unparsable_rate": bad / n if n else math.nan}


def compare_grounding(finetuned: str, dataset: str, *, configs: str = "all", limit: int = 0, device: str = "cpu",
                      batch_size: int = 8, max_new_tokens: int = 64) -> list[dict]:
    """One row per (config, model) with the scores and, for perturbed configs, the drop from that model's
    clean Acc@0.5 (absolute points and relative)."""
    from medfm_hf.finetune.load import read_finetuned_config
    from medfm_hf.finetune.vlm_grounding import build_base_vlm, load_finetuned_vlm

    cfg = read_finetuned_config(finetuned)
    tuned = load_finetuned_vlm(finetuned, device=device, batch_size=batch_size)
    kw = dict(cfg.get("model_kwargs") or {}, batch_size=batch_size)
    base = build_base_vlm(cfg["model"], cfg.get("checkpoint"), kw, device=device, dtype=cfg.get("vlm_dtype") or None)
    plan = grounding_eval_configs(dataset, configs)
    out: list[dict] = []
    clean: dict[str, float] = {}
    for config, pert, level in plan:
        rows = _test_rows(dataset, config, limit)
        for label, vlm in (("zero-shot", base), ("fine-tuned", tuned)):
            s = score_grounding(vlm, rows, max_new_tokens=max_new_tokens, batch_size=batch_size)
            row = {"config": config, "perturbation": pert or "clean", "level": level or 0, "model": label, **s}
            if config == "clean":
                clean[label] = s["acc@0.5"]
            else:
                row["drop"] = clean[label] - s["acc@0.5"]
                row["relative_drop"] = row["drop"] / clean[label] if clean[label] > 0 else math.nan
            out.append(row)
            logger.info("%s %s: Acc@0.5 %.3f (n=%d)", config, label, s["acc@0.5"], s["n"])
    return out


def format_comparison(rows: list[dict]) -> str:
    """A markdown table: per config, zero-shot and fine-tuned Acc@0.5 and drop (points)."""
    by: dict[str, dict[str, dict]] = {}
    for r in rows:
        by.setdefault(r["config"], {})[r["model"]] = r
    lines = ["| config | perturbation | level | n | zero-shot Acc@0.5 | fine-tuned Acc@0.5 | zero-shot drop | "
             "fine-tuned drop |", "|---|---|---:|---:|---:|---:|---:|---:|"]

    def f(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    for config, d in by.items():
        z, t = d["zero-shot"], d["fine-tuned"]
        lines.append(f"| {config} | {z['perturbation']} | {z['level'] or '-'} | {z['n']} | {f(z['acc@0.5'])} | "
                     f"{f(t['acc@0.5'])} | {f(z.get('drop'))} | {f(t.get('drop'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medfm_hf.finetune.vlm_compare", description=__doc__.split("\n")[0])
    p.add_argument("--finetuned", required=True, help="output folder of finetune.py --task grounding")
    p.add_argument("--dataset", required=True, help="benchmark folder (clean/test and perturbed configs)")
    p.add_argument("--output", default="", help="folder for comparison.csv and comparison.md")
    p.add_argument("--configs", default="all", help="all, none (clean only) or comma-separated config names")
    p.add_argument("--limit", type=int, default=0, help="first N test rows per config (0: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=64)
    a = p.parse_args(argv)
    from medfm_hf.finetune.load import FinetunedLoadError

    try:
        rows = compare_grounding(a.finetuned, a.dataset, configs=a.configs, limit=a.limit, device=a.device,
                                 batch_size=a.batch_size, max_new_tokens=a.max_new_tokens)
    except (ValueError, FinetunedLoadError) as exc:
        print(f"vlm_compare: error: {exc}", file=sys.stderr)
        return 2
    table = format_comparison(rows)
    print(table)
    if a.output:
        import pandas as pd

        from medfm_hf.dataset_io import atomic_write_text

        os.makedirs(a.output, exist_ok=True)
        atomic_write_text(os.path.join(a.output, "comparison.csv"), pd.DataFrame(rows).to_csv(index=False))
        atomic_write_text(os.path.join(a.output, "comparison.md"), table + "\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
