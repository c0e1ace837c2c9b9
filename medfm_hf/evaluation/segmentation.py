"""Segmentation robustness evaluation: clean, perturbed and attacked, sharded with Accelerate.

Work is cut into **batches** deterministically (same config, same image shape, sorted by image id), and the
batches are dealt round-robin to the processes, so the content of every batch -- and therefore every
per-sample number -- is the same whatever the number of processes. Each finished batch is written to
``<output>/.medfm/parts/<batch>.parquet`` atomically; a rerun skips batches whose file exists, so an
interrupted run resumes with no duplicates. The main process then merges the parts, joins each row to the
clean prediction of the same image, and writes the result tables.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from medfm_hf.benchmark.features import parse_config_name, parse_levels
from medfm_hf.dataset_io import atomic_write_text
from medfm_hf.evaluation.args import EvalArguments
from medfm_hf.evaluation.data import Benchmark, EvaluationError

logger = logging.getLogger(__name__)

KIND_ORDER = {"clean": 0, "perturbation": 1, "attack": 2}
PARTS = os.path.join(".medfm", "parts")


@dataclass(frozen=True)
class Item:
    kind: str
    name: str
    level: int
    config: str
    row: int
    image_id: str


@dataclass
class Batch:
    key: str
    items: list[Item]


def _check_checkpoint(path: str | None) -> None:
    if path is None:
        return
    looks_local = os.path.isabs(path) or path.startswith(".") or path.endswith((".pth", ".pt", ".bin",
                                                                                 ".safetensors"))
    if looks_local and not os.path.exists(path):
        raise EvaluationError(f"checkpoint {path!r} does not exist; pass a local file/folder or a Hub model id")


def plan(bench: Benchmark, args: EvalArguments, levels: list[int], attacks: list[str]) -> list[Batch]:
    """Every batch of the run, in a fixed order (independent of the number of processes)."""
    clean = bench.table("clean")
    keep_ids = [r["image_id"] for r in clean if r.get("bbox")]
    if args.images.strip() not in ("", "all"):
        pats = [p.strip() for p in args.images.split(",") if p.strip()]
        unmatched = [p for p in pats if not any(fnmatch.fnmatchcase(i, p) for i in keep_ids)]
        if unmatched:
            raise EvaluationError(f"--images {', '.join(unmatched)} matches no clean test image with a box "
                                  f"(ids look like {', '.join(keep_ids[:3])})")
        keep_ids = [i for i in keep_ids if any(fnmatch.fnmatchcase(i, p) for p in pats)]
    if args.limit is not None:
        keep_ids = keep_ids[: args.limit]
    keep = set(keep_ids)
    groups: list[tuple[str, str, int, str, list[int]]] = []
    groups.append(("clean", "clean", 0, "clean", [i for i, r in enumerate(clean) if r["image_id"] in keep]))
    for cfg in bench.select(args.configs, levels):
        name, lv = parse_config_name(cfg)
        rows = bench.table(cfg)
        groups.append(("perturbation", name, lv, cfg,
                       [i for i, r in enumerate(rows) if r["image_id"] in keep and r.get("bbox")]))
    for method in attacks:
        for lv in levels:
            groups.append(("attack", method, lv, "clean", list(groups[0][4])))
    batches: list[Batch] = []
    for kind, name, lv, cfg, idx in groups:
        by_shape: dict[tuple, list[int]] = {}
        for i in idx:
            by_shape.setdefault(bench.shape_of(cfg, i), []).append(i)
        for shape in sorted(by_shape):
            rows = by_shape[shape]
            table = bench.table(cfg)
            for k in range(0, len(rows), args.batch_size):
                chunk = rows[k : k + args.batch_size]
                items = [Item(kind, name, lv, cfg, i, table[i]["image_id"]) for i in chunk]
                sh = "x".join(map(str, shape))
                batches.append(Batch(f"{kind}-{name}-l{lv}-{sh}-{k // args.batch_size:05d}", items))
    return batches


def make_accelerator(mixed_precision: str = "no"):
    """An :class:`accelerate.Accelerator` that also shards on CPU-only machines.

    Without CUDA the accelerator is created with ``cpu=True``: that is what makes Accelerate start a gloo
    process group when ``accelerate launch`` runs several CPU processes (otherwise every process believes it
    is alone). Mixed precision is honoured on GPU only.
    """
    import torch
    from accelerate import Accelerator

    if not torch.cuda.is_available():
        if mixed_precision not in ("no", None):
            logger.warning("mixed precision %s ignored: no GPU", mixed_precision)
        return Accelerator(cpu=True, mixed_precision="no")
    return Accelerator(mixed_precision=mixed_precision)


def _batch_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def run_batch(model, bench: Benchmark, batch: Batch, args: EvalArguments, device, autocast) -> pd.DataFrame:
    import torch

    from medfm_hf.attacks import attack, attack_spec
    from medfm_hf.metrics.segmentation import dice_per_image, iou_per_image
    from medfm_hf.models.base import to_model_input

    t0 = time.perf_counter()
    rows = [bench.row(it.config, it.row) for it in batch.items]
    images = to_model_input([r.image for r in rows], device=device)
    boxes = torch.tensor([r.bbox for r in rows], dtype=torch.float32, device=device)
    first = batch.items[0]
    epsilon = steps = None
    if first.kind == "attack":
        spec = attack_spec(first.name, first.level, args.step_rule)
        epsilon, steps = spec.epsilon, spec.steps
        masks = torch.from_numpy(np.stack([r.mask for r in rows]).astype(np.float32)).to(device)
        gen = torch.Generator(device=device).manual_seed(_batch_seed(args.seed, batch.key))
        images = attack(model, images, boxes, masks, first.name, first.level, step_rule=args.step_rule,
                        generator=gen)
    with autocast():
        probs = model.predict(images, boxes)
    probs = probs.float().cpu().numpy()
    refs = [r.mask for r in rows]
    ious = iou_per_image(list(probs), refs)
    dices = dice_per_image(list(probs), refs)
    secs = (time.perf_counter() - t0) / len(rows)
    out = []
    for it, r, iou, dice in zip(batch.items, rows, ious, dices):
        out.append({
            "image_id": it.image_id, "source": r.source, "modality": r.modality, "kind": it.kind, "name": it.name,
            "level": it.level, "strength": r.strength if it.kind == "perturbation" else None,
            "ssim": r.ssim if it.kind == "perturbation" else None,
            "in_band": r.in_band if it.kind == "perturbation" else None,
            "epsilon": epsilon, "steps": steps, "iou": iou, "dice": dice, "seconds": secs, "batch": batch.key,
        })
    return pd.DataFrame(out)


def _settings(args: EvalArguments) -> dict:
    d = asdict(args)
    for k in ("output", "push_to_hub", "no_progress", "mixed_precision"):
        d.pop(k, None)
    return d


def _atomic_parquet(df: pd.DataFrame, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def evaluate_segmentation(args: EvalArguments, accelerator=None) -> dict | None:
    """Run the evaluation described by ``args``; returns the summary (main process) or ``None``."""
    from tqdm.auto import tqdm

    from medfm_hf.attacks import METHODS
    from medfm_hf.models import create_segmenter, list_segmenters

    # ---- everything that can be wrong is checked before any work -------------------------------------
    if args.model not in list_segmenters():
        raise EvaluationError(f"unknown model {args.model!r}; available: {', '.join(list_segmenters())}")
    _check_checkpoint(args.checkpoint)
    if args.batch_size < 1:
        raise EvaluationError("--batch-size must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise EvaluationError("--limit must be >= 1")
    levels = parse_levels(args.levels)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    bad = [a for a in attacks if a not in METHODS]
    if bad:
        raise EvaluationError(f"unknown attacks {bad}; choose from {', '.join(METHODS)}")
    try:
        model_kwargs = json.loads(args.model_kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"--model-kwargs is not valid JSON: {exc}") from exc
    bench = Benchmark(args.dataset)
    batches = plan(bench, args, levels, attacks)
    if len(batches) <= 1 and not bench.select(args.configs, levels) and not attacks:
        logger.info("only clean images selected")
    if not batches:
        raise EvaluationError("the selection is empty: no clean test image with a mask was found")
    accelerator = accelerator or make_accelerator(args.mixed_precision)
    if args.finetuned:  # a finetune.py output folder: base model + the trained strategy, merged
        from medfm_hf.finetune.load import load_finetuned, read_finetuned_config

        try:
            if read_finetuned_config(args.finetuned)["model"] != args.model:
                raise ValueError(f"{args.finetuned} fine-tuned model {read_finetuned_config(args.finetuned)['model']!r}, "
                                 f"not --model {args.model!r}")
            model = load_finetuned(args.finetuned, device=accelerator.device, checkpoint=args.checkpoint)
        except ValueError as exc:
            raise EvaluationError(str(exc)) from exc
    else:
        model = create_segmenter(args.model, checkpoint=args.checkpoint, device=accelerator.device, **model_kwargs)
    if attacks and not getattr(model, "differentiable", False):
        raise EvaluationError(f"model {args.model!r} is not differentiable: gradient attacks cannot run on it; "
                              "drop --attacks or choose a neural model")

    # ---- output folder and resume --------------------------------------------------------------------
    out = args.output
    parts = os.path.join(out, PARTS)
    settings_path = os.path.join(out, ".medfm", "eval_settings.json")
    if accelerator.is_main_process:
        os.makedirs(parts, exist_ok=True)
        if os.path.exists(settings_path):
            with open(settings_path, encoding="utf-8") as fh:
                old = json.load(fh)
            if old != _settings(args):
                diff = sorted(k for k in _settings(args) if old.get(k) != _settings(args)[k])
                raise EvaluationError(f"{out} holds a run with other settings (differs in {', '.join(diff)}); "
                                      "choose another --output")
        else:
            atomic_write_text(settings_path, json.dumps(_settings(args), indent=2, sort_keys=True))
    accelerator.wait_for_everyone()

    mine = batches[accelerator.process_index :: accelerator.num_processes]
    todo = [b for b in mine if not os.path.exists(os.path.join(parts, f"{b.key}.parquet"))]
    bar = tqdm(total=len(todo), desc=f"evaluating {args.model} (rank 0 of {accelerator.num_processes})",
               unit="batch", disable=args.no_progress or not accelerator.is_local_main_process)
    processed = []
    for b in todo:
        df = run_batch(model, bench, b, args, accelerator.device, accelerator.autocast)
        _atomic_parquet(df, os.path.join(parts, f"{b.key}.parquet"))
        processed.append(b.key)
        bar.update()
    bar.close()
    model.eval()
    with open(os.path.join(out, ".medfm", f"rank{accelerator.process_index}.json"), "w", encoding="utf-8") as fh:
        json.dump({"rank": accelerator.process_index, "world": accelerator.num_processes,
                   "assigned": [b.key for b in mine], "processed": processed}, fh)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    from medfm_hf.evaluation.results import write_results

    return write_results(args, bench, batches, accelerator, levels, attacks, model)
