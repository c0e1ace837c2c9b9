"""``medfm-robust compare-strategies``: every strategy under one budget, one evaluator, one ranking.

For one model, each strategy is fine-tuned with the same data, loss, optimiser, learning rate (unless
overridden per strategy), batch and number of optimizer steps (``finetune.py`` semantics: ``clean/train``
to fit, ``clean/validation`` to select); then every selected checkpoint -- and the base model without
fine-tuning (``none``) -- is evaluated by the same evaluator on the same configs (clean, perturbed,
attacked). The ranking orders strategies by their mean IoU over the perturbed configs (what a user gets
under perturbation); the relative drop alone would reward a model that segments nothing.

Outputs in ``--output``: ``ranking.csv``, ``ranking.md``, ``ranking.png`` and ``compare.json``, plus one
``train/<strategy>`` and ``eval/<strategy>`` folder per strategy. Everything is resumable: a rerun reuses
finished trainings and evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np
import pandas as pd

from medfm_hf.dataset_io import atomic_write_text
from medfm_hf.finetune.args import FinetuneArguments
from medfm_hf.finetune.strategies import STRATEGIES
from medfm_hf.reporting.strategies import plot_ranking, ranking_markdown

logger = logging.getLogger(__name__)

BASELINE = "none"


@dataclasses.dataclass
class CompareArguments:
    """Arguments of ``medfm-robust compare-strategies`` (the training options are those of ``finetune.py``)."""

    model: str
    dataset: str
    output: str
    strategies: str = "all"
    checkpoint: str | None = None
    model_kwargs: str = "{}"
    max_steps: int = 30
    batch_size: int = 4
    learning_rate: float = 1e-4
    lr_overrides: str = ""  # e.g. "lora=1e-3,adapter=1e-3"
    eval_steps: int = 0
    encoder_blocks: int = 1
    lora_rank: int = 8
    image_size: int = 256
    seed: int = 0
    train_options: str = "{}"  # any other FinetuneArguments field, as JSON
    configs: str = "all"
    attacks: str = "fgsm,pgd"
    levels: str = "1-5"
    limit: int | None = None
    eval_batch_size: int = 8
    skip_baseline: bool = False  # leave out the base model's evaluation (e.g. when strategies are sharded)
    no_progress: bool = False


def parse_strategies(spec: str) -> list[str]:
    chosen = list(STRATEGIES) if spec.strip() in ("", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in chosen if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)} or 'all'")
    return chosen


def _lr_overrides(spec: str) -> dict[str, float]:
    out = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, value = part.partition("=")
        if name not in STRATEGIES or not value:
            raise ValueError(f"--lr-overrides wants strategy=lr pairs (e.g. lora=1e-3), got {part!r}")
        out[name] = float(value)
    return out


def finetune_args(args: CompareArguments, strategy: str) -> FinetuneArguments:
    """The ``finetune.py`` arguments of one strategy (everything but the strategy and its learning rate shared)."""
    extra = json.loads(args.train_options or "{}")
    lr = _lr_overrides(args.lr_overrides).get(strategy, args.learning_rate)
    return FinetuneArguments(
        model=args.model, dataset=args.dataset, output=os.path.join(args.output, "train", strategy),
        strategy=strategy, checkpoint=args.checkpoint, model_kwargs=args.model_kwargs, max_steps=args.max_steps,
        batch_size=args.batch_size, learning_rate=lr, eval_steps=args.eval_steps, encoder_blocks=args.encoder_blocks,
        lora_rank=args.lora_rank, image_size=args.image_size, seed=args.seed, no_progress=args.no_progress, **extra,
    )


def _results_frame(res: dict | None, out: str, model: str) -> pd.DataFrame:
    """Per-sample rows of an evaluation (from the evaluator's return value, else from its files)."""
    if res is not None and isinstance(res.get("results"), pd.DataFrame):
        return res["results"]
    for name in (f"{model}_results.parquet", f"{model}_results.csv"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    raise FileNotFoundError(f"no per-sample results in {out}")


def robustness_row(df: pd.DataFrame) -> dict:
    """Clean IoU/Dice, mean perturbed IoU, mean absolute/relative IoU drop, per-family and per-attack drops."""
    from medfm_hf.perturbations.registry import get_perturbation

    clean = df[df["kind"] == "clean"]
    row: dict = {"clean_iou": float(clean["iou"].mean()), "clean_dice": float(clean["dice"].mean())}
    per = []
    for name, g in df[df["kind"] == "perturbation"].groupby("name"):
        lv = g.groupby("level")[["iou", "iou_drop", "clean_iou"]].mean()
        drop = float(lv["iou_drop"].mean())
        same = float(lv["clean_iou"].mean())
        per.append({"name": name, "family": get_perturbation(name).family, "iou": float(lv["iou"].mean()),
                    "drop": drop, "rel": drop / same if same > 0 else float("nan")})
    if per:
        p = pd.DataFrame(per)
        row.update(perturbed_iou=float(p["iou"].mean()), iou_drop=float(p["drop"].mean()),
                   rel_iou_drop=float(p["rel"].mean()))
        for fam, g in p.groupby("family"):
            row[f"drop_{fam}"] = float(g["drop"].mean())
    for name, g in df[df["kind"] == "attack"].groupby("name"):
        row[f"drop_{name}"] = float(g.groupby("level")["iou_drop"].mean().mean())
    return row


def compare_strategies(args: CompareArguments) -> pd.DataFrame:
    """Train every strategy of ``args.strategies`` under one budget, evaluate each, write the ranking."""
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.segmentation import evaluate_segmentation
    from medfm_hf.finetune.trainer import run_finetune

    strategies = parse_strategies(args.strategies)
    _lr_overrides(args.lr_overrides)
    os.makedirs(args.output, exist_ok=True)
    rows = []
    common_eval = dict(model=args.model, dataset=args.dataset, configs=args.configs, attacks=args.attacks,
                       levels=args.levels, limit=args.limit, batch_size=args.eval_batch_size, seed=args.seed,
                       no_progress=args.no_progress)
    for strategy in ([] if args.skip_baseline else [BASELINE]) + strategies:
        t0 = time.perf_counter()
        if strategy == BASELINE:
            cfg = {"trainable_params": 0, "train_seconds": 0.0, "selected_step": None,
                   "selected_validation": {"iou": float("nan")}}
            ev_kw = dict(checkpoint=args.checkpoint, model_kwargs=args.model_kwargs)
        else:
            fa = finetune_args(args, strategy)
            logger.info("== %s: fine-tuning (%d steps, batch %d, lr %g)", strategy, fa.max_steps, fa.batch_size,
                        fa.learning_rate)
            cfg = run_finetune(fa)
            ev_kw = dict(finetuned=fa.output, checkpoint=args.checkpoint)
        logger.info("== %s: evaluating", strategy)
        out = os.path.join(args.output, "eval", strategy)
        res = evaluate_segmentation(EvalArguments(output=out, **common_eval, **ev_kw))
        row = {"strategy": strategy, "trainable_params": int(cfg["trainable_params"]),
               "train_s": float(cfg.get("train_seconds", 0.0)), "selected_step": cfg["selected_step"],
               "val_iou": float(cfg["selected_validation"]["iou"]),
               **robustness_row(_results_frame(res, out, args.model))}
        rows.append(row)
        write_ranking(args, rows, strategies)
        logger.info("== %s done in %.0f s: %s", strategy, time.perf_counter() - t0,
                    {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
    return write_ranking(args, rows, strategies)


def write_ranking(args: CompareArguments, rows: list[dict], strategies: list[str]) -> pd.DataFrame:
    """Write ranking.csv/.md/.png and compare.json for the rows so far (called after every strategy)."""
    table = pd.DataFrame(rows)
    if strategies and os.path.exists(os.path.join(args.output, "train", strategies[0], "training_log.json")):  # the base model's validation IoU is every run's step-0 validation
        with open(os.path.join(args.output, "train", strategies[0], "training_log.json"), encoding="utf-8") as fh:
            table.loc[table["strategy"] == BASELINE, "val_iou"] = json.load(fh)["validation"][0]["iou"]
    key = "perturbed_iou" if "perturbed_iou" in table else "clean_iou"
    table = table.sort_values(key, ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    atomic_write_text(os.path.join(args.output, "ranking.csv"), table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(os.path.join(args.output, "ranking.md"), ranking_markdown(table) + "\n")
    plot_ranking(table, os.path.join(args.output, "ranking.png"), f"{args.model}: fine-tuning strategies, "
          f"{args.max_steps} steps x batch {args.batch_size}")
    atomic_write_text(os.path.join(args.output, "compare.json"),
                      json.dumps({"arguments": dataclasses.asdict(args), "ranked_by": key,
                                  "rows": json.loads(table.to_json(orient="records"))}, indent=2))
    return table
