"""Zero-shot vs fine-tuned grounding: clean Acc@0.5 and the drop per perturbation and level, in one command::

    python -m medfm_hf.finetune.vlm_compare --finetuned runs/medgemma_lora --dataset medfm-robust \\
        --output results/medgemma_lora_vs_zero_shot

Both columns come from the one evaluator (``evaluate.py --task grounding``), run twice on the same selection:
once on the fine-tune's base model (same family, checkpoint and options as recorded in the fine-tune's
config) and once with ``--finetuned DIR`` (the base with the LoRA merged, its weight fingerprint checked).
So both answer the same prompt, are parsed in the family's box convention, count an unparsable answer as a
miss in the same denominator, and are scored against the benchmark's moved boxes on geometric
perturbations. The two evaluator runs are kept under ``<output>/zero_shot`` and ``<output>/finetuned``
(resumable); ``<output>/comparison.csv`` and ``comparison.md`` hold the joined table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys

import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["compare_grounding", "format_comparison"]

HEAD = "acc@0.5"


def compare_grounding(finetuned: str, dataset: str, output: str, *, configs: str = "all", levels: str = "1-5",
                      limit: int | None = None, batch_size: int = 8, max_new_tokens: int | None = None,
                      allow_incomplete: bool = False, no_progress: bool = True) -> pd.DataFrame:
    """Run the grounding evaluator on the zero-shot base and on the fine-tune; one row per condition x level
    with both models' Acc@0.5, mean IoU, unparsable rate and paired drop from their own clean Acc@0.5."""
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.runner import evaluate
    from medfm_hf.finetune.load import read_finetuned_config

    cfg = read_finetuned_config(finetuned)
    if cfg.get("task") != "grounding":
        raise ValueError(f"{finetuned} is not a grounding fine-tune (task {cfg.get('task')!r})")
    kwargs = dict(cfg.get("model_kwargs") or {})
    if cfg.get("base_dtype") or cfg.get("vlm_dtype"):  # both columns in the precision the fine-tune trained in
        kwargs["dtype"] = cfg.get("base_dtype") or cfg["vlm_dtype"]
    common = dict(model=cfg["model"], dataset=dataset, task="grounding", checkpoint=cfg.get("checkpoint"),
                  model_kwargs=json.dumps(kwargs), configs=configs, levels=levels, limit=limit,
                  batch_size=batch_size, max_new_tokens=max_new_tokens, allow_incomplete=allow_incomplete,
                  no_progress=no_progress)
    stats = {}
    for label, ft in (("zero_shot", None), ("finetuned", finetuned)):
        res = evaluate(EvalArguments(output=os.path.join(output, label), finetuned=ft, **common))
        stats[label] = res["stats"] if res is not None else None
    if stats["zero_shot"] is None:  # not the main process
        return pd.DataFrame()
    keys = ["kind", "name", "level"]
    cols = ["n", HEAD, "mean_iou", "unparsable_rate", f"clean_{HEAD}", f"{HEAD}_drop", f"rel_{HEAD}_drop"]
    z = stats["zero_shot"][keys + cols].rename(columns={c: f"zero_shot_{c}" for c in cols})
    f = stats["finetuned"][keys + cols].rename(columns={c: f"finetuned_{c}" for c in cols})
    table = z.merge(f, on=keys, how="outer", sort=False)
    if not (table["zero_shot_n"] == table["finetuned_n"]).all():
        raise RuntimeError("the two evaluator runs scored different samples; rerun both with the same selection")
    return table


def format_comparison(table: pd.DataFrame) -> str:
    """A markdown table: per condition and level, both models' Acc@0.5 (%), paired drop (points) and
    unparsable-answer rate (%)."""

    def pct(v: float) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    lines = ["| condition | level | n | zero-shot Acc@0.5 | fine-tuned Acc@0.5 | zero-shot drop | fine-tuned drop | "
             "zero-shot unparsable | fine-tuned unparsable |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.to_dict("records"):
        clean = r["kind"] == "clean"
        lines.append(f"| {r['name']} | {'-' if clean else r['level']} | {int(r['zero_shot_n'])} | "
                     f"{pct(r[f'zero_shot_{HEAD}'])} | {pct(r[f'finetuned_{HEAD}'])} | "
                     f"{'-' if clean else pct(r[f'zero_shot_{HEAD}_drop'])} | "
                     f"{'-' if clean else pct(r[f'finetuned_{HEAD}_drop'])} | {pct(r['zero_shot_unparsable_rate'])} | "
                     f"{pct(r['finetuned_unparsable_rate'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medfm_hf.finetune.vlm_compare",
                                description="zero-shot vs fine-tuned grounding (clean Acc@0.5, drop per perturbation "
                                            "x level)")
    p.add_argument("--finetuned", required=True, help="output folder of finetune.py --task grounding")
    p.add_argument("--dataset", required=True, help="benchmark folder or Hub dataset id")
    p.add_argument("--output", required=True, help="results folder (two evaluator runs + comparison.csv/.md)")
    p.add_argument("--configs", default="all", help="as evaluate.py: all, none or comma-separated configs")
    p.add_argument("--levels", default="1-5")
    p.add_argument("--limit", type=int, default=None, help="first N clean test images")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=None)
    p.add_argument("--allow_incomplete", action="store_true")
    a = p.parse_args(argv)
    from medfm_hf.errors import USER_ERRORS, report_error

    try:
        table = compare_grounding(a.finetuned, a.dataset, a.output, configs=a.configs, levels=a.levels,
                                  limit=a.limit, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                                  allow_incomplete=a.allow_incomplete)
    except (*USER_ERRORS, ValueError) as exc:
        return report_error("vlm_compare", exc)
    if table.empty:
        return 0
    from medfm_hf.io import atomic_write_text

    md = format_comparison(table)
    atomic_write_text(os.path.join(a.output, "comparison.csv"), table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(os.path.join(a.output, "comparison.md"), md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
