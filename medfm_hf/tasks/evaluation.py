"""The one evaluator's VLM task module: ``vqa``, ``caption`` and ``grounding`` through the runner.

:mod:`medfm_hf.evaluation.runner` plans, shards over Accelerate processes, resumes and merges exactly as
for segmentation; this module gives it the three hooks (:func:`plan_batches`, :func:`load_model`,
:func:`run_batch`) and the result writer (:func:`write_results`) for a :class:`~medfm_hf.tasks.base.TaskSpec`.

Batches are cut deterministically (same config, rows sorted by image id, ``batch_size`` at a time), so
every per-sample number is the same whatever the number of processes. Answers go through a
:class:`~medfm_hf.vlm.cache.ResponseCache` in ``<output>/.medfm/vlm_cache.sqlite`` (written as each
batch finishes), so a killed run resumes without asking an API again what it already answered.

Result files (``<model>_<task>_*``): ``results.parquet``/``.csv`` (per sample), ``STATS_BY_LEVEL.csv``
(per condition x level, paired with the clean answers of the same images), ``SUMMARY.csv`` (per
perturbation, mean over levels; ``Clean`` and ``Avg`` rows), ``run.json``, ``README.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from medfm_hf.benchmark import layout
from medfm_hf.evaluation.plan import Batch, EvalPlan, EvaluationError, WorkItem
from medfm_hf.tasks.base import to_rgb_uint8

logger = logging.getLogger(__name__)

__all__ = ["load_model", "plan_batches", "result_prefix", "run_batch", "summarize", "write_results"]

KIND_ORDER = {"clean": 0, "perturbation": 1}
CACHE_FILE = f"{layout.STATE_DIR}/vlm_cache.sqlite"
ROW_COLUMNS = ["image_id", "source", "modality", "kind", "name", "level", "strength", "ssim", "in_band",
               "target_visible_fraction", "prompt", "reference", "raw_output", "response", "parsed", "parse_rule"]
TAIL_COLUMNS = ["status", "finish_reason", "error", "tokens_in", "tokens_out", "seconds", "cached"]


def _spec(plan: EvalPlan):
    from medfm_hf.tasks import get_task

    return get_task(plan.task)


def result_prefix(plan: EvalPlan) -> str:
    """``<output>/<model>_<task>``: the prefix of every result file of a VLM run."""
    return os.path.join(plan.output, f"{plan.model}_{plan.task}")


# ------------------------------------------------------------------------------------------------------
# the three runner hooks
# ------------------------------------------------------------------------------------------------------


def plan_batches(reader, plan: EvalPlan) -> list[Batch]:
    """Every batch of the run, in a fixed order (independent of the number of processes)."""
    spec = _spec(plan)
    clean = reader.table(layout.CLEAN)
    keep_ids = [r["image_id"] for r in clean if spec.wants(r)]
    if plan.limit is not None:
        keep_ids = keep_ids[: plan.limit]
    if not keep_ids:
        raise EvaluationError(f"{plan.dataset} has no clean test row with the fields of --task {plan.task} "
                              f"({', '.join(spec.fields)}); build it from a source that provides them (e.g. demo)")
    keep = set(keep_ids)
    groups = [("clean", "clean", 0, layout.CLEAN, [i for i, r in enumerate(clean) if r["image_id"] in keep])]
    for cfg in plan.configs:
        name, lv = layout.parse_config_name(cfg)
        rows = reader.table(cfg)
        groups.append(("perturbation", name, lv, cfg,
                       [i for i, r in enumerate(rows) if r["image_id"] in keep and spec.wants(r)]))
    batches: list[Batch] = []
    for kind, name, lv, cfg, idx in groups:
        table = reader.table(cfg)
        for k in range(0, len(idx), plan.batch_size):
            chunk = idx[k : k + plan.batch_size]
            items = tuple(WorkItem(kind, name, lv, cfg, i, table[i]["image_id"]) for i in chunk)
            batches.append(Batch(f"{plan.task}-{kind}-{name}-l{lv}-{k // plan.batch_size:05d}", items))
    return batches


def cache_path(plan: EvalPlan) -> str | None:
    """Where the response cache lives (``None`` = no cache)."""
    value = (plan.extra.get("vlm_cache") if plan.extra else None) or getattr(plan, "cache", None) or "auto"
    if value == "none":
        return None
    if value == "auto":
        return os.path.join(plan.output, *CACHE_FILE.split("/"))
    return value


def load_model(plan: EvalPlan, device):
    """The vision-language model of the plan on ``device`` (one-line :class:`EvaluationError` on failure)."""
    from medfm_hf.vlm import create_vlm

    cache = cache_path(plan)
    if cache is not None:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    finetuned = (plan.extra or {}).get("finetuned")
    try:
        if finetuned:  # finetune.py --task grounding output: base + LoRA merged (medfm_hf.finetune.vlm_grounding)
            from medfm_hf.finetune.load import read_finetuned_config
            from medfm_hf.finetune.vlm_grounding import load_finetuned_vlm

            tuned = read_finetuned_config(finetuned)["model"]
            if tuned != plan.model:
                raise EvaluationError(f"{finetuned} fine-tuned model {tuned!r}, not --model {plan.model!r}")
            model = load_finetuned_vlm(finetuned, device=str(device), checkpoint=plan.checkpoint,
                                       batch_size=plan.batch_size, cache=cache)
            model.name = plan.model
            return model
        return create_vlm(plan.model, checkpoint=plan.checkpoint, device=str(device), batch_size=plan.batch_size,
                          cache=cache, **plan.model_kwargs)
    except EvaluationError:
        raise
    except (TypeError, ValueError, OSError, KeyError, RuntimeError, ImportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise EvaluationError(f"could not build vision-language model {plan.model!r} from {plan.checkpoint!r}: "
                              f"{str(msg).splitlines()[0] if str(msg) else type(exc).__name__}") from None


def _generation_config(plan: EvalPlan, spec):
    from medfm_hf.vlm import GenerationConfig

    mnt = plan.extra.get("max_new_tokens") if plan.extra else None
    return GenerationConfig(max_new_tokens=int(mnt or spec.max_new_tokens), seed=plan.seed)


def _is_local(model) -> bool:
    return hasattr(model, "encode") and hasattr(model, "model")


def run_batch(model, reader, batch: Batch, plan: EvalPlan, device, autocast) -> pd.DataFrame:
    """Ask the model about one batch and score each answer; returns its per-sample rows."""
    from medfm_hf.vlm.base import to_pil_rgb

    spec = _spec(plan)
    config = _generation_config(plan, spec)
    rows = [reader.row(it.config, it.row) for it in batch.items]
    fields = [{**r.extra, "image_id": r.image_id, "source": r.source, "modality": r.modality} for r in rows]
    images = [to_pil_rgb(to_rgb_uint8(r.image)) for r in rows]
    prompts = [spec.prompt(f, model) for f in fields]
    queries = [model.make_query(im, p) for im, p in zip(images, prompts)]
    responses = model.generate(queries, config)
    probs: list[Any] = [None] * len(rows)
    if spec.name == "vqa" and _is_local(model):
        from medfm_hf.tasks.vqa import option_letter_probs

        probs = option_letter_probs(model, queries, [len(f["options"]) for f in fields], config)
    out = []
    for it, r, f, im, prompt, resp, pr in zip(batch.items, rows, fields, images, prompts, responses, probs):
        pert = it.kind == "perturbation"
        text = resp.text if resp.ok else None
        rec: dict[str, Any] = {
            "image_id": it.image_id, "source": r.source, "modality": r.modality, "kind": it.kind, "name": it.name,
            "level": it.level, "strength": r.strength if pert else None, "ssim": r.ssim if pert else None,
            "in_band": r.in_band if pert else None,
            "target_visible_fraction": f.get("target_visible_fraction") if pert else None,
            "prompt": prompt, "reference": spec.reference(f), "raw_output": resp.raw_text, "response": resp.text,
        }
        rec.update(spec.score(text, f, model, im.size))
        if spec.name == "vqa":
            from medfm_hf.tasks.vqa import prob_columns

            rec.update(prob_columns(pr, f))
        rec.update({"status": resp.status, "finish_reason": resp.finish_reason, "error": resp.error,
                    "tokens_in": resp.tokens_in, "tokens_out": resp.tokens_out, "seconds": float(resp.seconds),
                    "cached": bool(resp.cached), "batch": batch.key})
        out.append(rec)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------------


def merge_parts(plan: EvalPlan) -> pd.DataFrame:
    """The per-sample table of a finished run: parts concatenated, task columns finalised, sorted."""
    from medfm_hf.evaluation.results import read_parts

    df = read_parts(plan)
    spec = _spec(plan)
    if spec.finalize is not None:
        df = spec.finalize(df)
    df["_k"] = df["kind"].map(KIND_ORDER)
    df = df.sort_values(["_k", "name", "level", "image_id"], kind="stable").reset_index(drop=True)
    if df.duplicated(["kind", "name", "level", "image_id"]).any():
        raise RuntimeError("duplicate result rows; the results folder is corrupt")
    head = spec.metrics[spec.headline]
    clean = df[df["kind"] == "clean"].set_index("image_id")[head]
    df[f"clean_{head}"] = df["image_id"].map(clean)
    df[f"{head}_drop"] = df[f"clean_{head}"] - df[head]
    metric_cols = [c for c in dict.fromkeys(spec.metrics.values())]
    rest = [c for c in df.columns if c not in ROW_COLUMNS + TAIL_COLUMNS + metric_cols + ["_k", "batch"]]
    return df[ROW_COLUMNS + metric_cols + rest + TAIL_COLUMNS]


def _failed(status: pd.Series) -> pd.Series:
    return ~status.isin(["ok", "truncated"])


def level_stats(df: pd.DataFrame, spec) -> pd.DataFrame:
    """One row per condition x level (clean first): metric means, paired clean vs perturbed headline and
    its absolute and relative drop, unparsable / failure / block / truncation rates, calibration (vqa)."""
    head_name, head = spec.headline, spec.metrics[spec.headline]
    clean = df[df["kind"] == "clean"].set_index("image_id")
    rows = []
    for (kind, name, level), g in df.groupby(["kind", "name", "level"], sort=False):
        rec: dict[str, Any] = {"kind": kind, "name": name, "level": int(level), "n": len(g)}
        for out_name, col in spec.metrics.items():
            rec[out_name] = float(g[col].mean())
        paired = clean.loc[clean.index.intersection(g["image_id"]), head]
        rec[f"clean_{head_name}"] = float(paired.mean()) if len(paired) else float("nan")
        rec[f"{head_name}_drop"] = rec[f"clean_{head_name}"] - float(g.set_index("image_id").loc[paired.index, head]
                                                                     .mean()) if len(paired) else float("nan")
        c = rec[f"clean_{head_name}"]
        rec[f"rel_{head_name}_drop"] = rec[f"{head_name}_drop"] / c if c else float("nan")
        ok = ~_failed(g["status"])
        rec["unparsable_rate"] = float((ok & g["parsed"].isna()).mean())
        rec["failure_rate"] = float((~ok).mean())
        rec["blocked_rate"] = float((g["status"] == "blocked").mean())
        rec["truncated_rate"] = float((g["finish_reason"] == "length").mean())
        rec["cached_rate"] = float(g["cached"].astype(float).mean())
        if "confidence" in g:
            from medfm_hf.tasks.vqa import expected_calibration_error

            has = g["confidence"].notna()
            rec["prob_accuracy"] = float(g.loc[has, "prob_correct"].mean()) if has.any() else float("nan")
            rec["mean_confidence"] = float(g.loc[has, "confidence"].mean()) if has.any() else float("nan")
            rec["ece"] = expected_calibration_error(g.loc[has, "confidence"], g.loc[has, "prob_correct"])
        if kind == "perturbation":
            rec["mean_ssim"] = float(g["ssim"].mean())
            tvf = pd.to_numeric(g["target_visible_fraction"], errors="coerce")
            rec["mean_target_visible_fraction"] = float(tvf.mean()) if tvf.notna().any() else float("nan")
        if spec.group_metrics is not None:
            rec.update(spec.group_metrics(g))
        rows.append(rec)
    return pd.DataFrame(rows)


def summarize(stats: pd.DataFrame, spec) -> pd.DataFrame:
    """``Clean``, one row per perturbation (mean of its levels) and ``Avg`` (mean of the perturbations)."""
    head = spec.headline
    cols = [*spec.metrics, f"clean_{head}", f"{head}_drop", f"rel_{head}_drop", "unparsable_rate", "failure_rate",
            "blocked_rate"] + [c for c in ("ece", "mean_confidence", "prob_accuracy") if c in stats]
    out = []
    c = stats[stats["kind"] == "clean"]
    if len(c):
        out.append({"name": "Clean", "kind": "clean", "levels": 0, "n": int(c["n"].sum()),
                    **{k: float(c[k].iloc[0]) for k in cols}})
    per = []
    for name, g in stats[stats["kind"] != "clean"].groupby("name", sort=False):
        per.append({"name": name, "kind": "perturbation", "levels": len(g), "n": int(g["n"].sum()),
                    **{k: float(g[k].mean()) for k in cols}})
    out += per
    if per:
        out.append({"name": "Avg", "kind": "all", "levels": 0, "n": sum(p["n"] for p in per),
                    **{k: float(np.mean([p[k] for p in per])) for k in cols}})
    return pd.DataFrame(out)


def write_results(plan: EvalPlan, reader, accelerator, model) -> dict:
    """Merge the parts and write the per-sample table, the summaries, ``run.json`` and a card."""
    from medfm_hf.env import git_revision, hardware, versions
    from medfm_hf.io import atomic_write_parquet, atomic_write_text
    from medfm_hf.vlm import vlm_spec

    spec = _spec(plan)
    df = merge_parts(plan)
    prefix = result_prefix(plan)
    atomic_write_parquet(df, f"{prefix}_results.parquet")
    atomic_write_text(f"{prefix}_results.csv", df.to_csv(index=False, float_format="%.6g"))
    stats = level_stats(df, spec)
    atomic_write_text(f"{prefix}_STATS_BY_LEVEL.csv", stats.to_csv(index=False, float_format="%.6g"))
    summ = summarize(stats, spec)
    atomic_write_text(f"{prefix}_SUMMARY.csv", summ.to_csv(index=False, float_format="%.6g"))
    kind = vlm_spec(plan.model).kind
    gen = _generation_config(plan, spec)
    run = {"task": plan.task, "arguments": {**plan.settings(), "dataset": plan.dataset,
                                            "levels": ",".join(map(str, plan.levels))},
           "levels": list(plan.levels), "configs": list(plan.configs), "versions": versions(),
           "git_revision": git_revision(), "seeds": {"generation_seed": plan.seed}, "hardware": hardware(accelerator),
           "dataset_path": plan.dataset_path,
           "dataset": {"name": plan.dataset, "fingerprint": plan.fingerprints["dataset"],
                       "revision": plan.fingerprints.get("dataset_revision"),
                       "complete": plan.fingerprints["dataset_complete"], "allow_incomplete": plan.allow_incomplete},
           "model": {"name": plan.model, "kind": kind, "model_id": getattr(model, "model_id", None),
                     "checkpoint": plan.checkpoint, "fingerprint": plan.fingerprints["checkpoint"],
                     "pretrained": not (plan.model_kwargs.get("size") == "tiny"),
                     "prompt_format": getattr(getattr(model, "prompt_format", None), "kind", None),
                     "box_convention": getattr(getattr(model, "box_convention", None), "box_format", None)},
           "generation": gen.to_dict(), "headline": spec.headline, "cache": cache_path(plan),
           "prompt_template": _template(spec, model),
           "run_key": plan.run_key, "samples": int(len(df)), "batches": len(plan.batches),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(os.path.join(plan.output, "run.json"), json.dumps(run, indent=2, sort_keys=True, default=str))
    _write_card(plan, spec, summ, run)
    if plan.push_to_hub:
        from medfm_hf.benchmark.hub import push_folder

        push_folder(plan.output, plan.push_to_hub)
    return {"results": df, "summary": summ, "stats": stats, "run": run}


def _template(spec, model) -> str:
    from medfm_hf.tasks.base import template_for

    return template_for(spec, model)


def _write_card(plan: EvalPlan, spec, summ: pd.DataFrame, run: dict) -> None:
    from medfm_hf.dataset_io import format_table
    from medfm_hf.io import atomic_write_text
    from medfm_hf.reporting.runs import card_front_matter

    base = f"{plan.model}_{plan.task}"
    s = summ.copy()
    for c in s.columns:
        if s[c].dtype.kind == "f":
            s[c] = s[c].map(lambda v: f"{v:.4f}")
    label = " (tiny random model: a pipeline check, the numbers mean nothing)" if not run["model"]["pretrained"] \
        else ""
    card = card_front_matter(f"{base}_results.parquet", plan.task) + f"""
# VLM robustness results: {plan.model}, {plan.task}{label}

{spec.description}. Headline: **{spec.headline}**. Per-sample rows (prompt, raw output, parsed answer,
scores, finish reason, tokens, seconds, cache hit): `{base}_results.parquet` / `.csv`; per condition x level:
`{base}_STATS_BY_LEVEL.csv`; per perturbation: `{base}_SUMMARY.csv`; settings and fingerprints: `run.json`.

## Summary

{format_table(s.to_dict("records"), markdown=True)}
"""
    atomic_write_text(os.path.join(plan.output, "README.md"), card)
