"""The segmentation task: clean, perturbed and attacked predictions scored with IoU and Dice.

Work is cut into **batches** deterministically (same config, same image shape, sorted by image id), so the
content of every batch -- and therefore every per-sample number -- is the same whatever the number of
processes (the runner deals the batches to processes; see :mod:`medfm_hf.evaluation.runner`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import time

import numpy as np
import pandas as pd

from medfm_hf.benchmark import layout
from medfm_hf.evaluation.plan import Batch, EvalPlan, EvaluationError, WorkItem

logger = logging.getLogger(__name__)

TASK = "segmentation"


def plan_batches(reader, plan: EvalPlan) -> list[Batch]:
    """Every batch of the run, in a fixed order (independent of the number of processes)."""
    clean = reader.table(layout.CLEAN)
    keep_ids = [r["image_id"] for r in clean if r.get("bbox")]
    images = str(plan.extra.get("images") or "all").strip()
    if images not in ("", "all"):
        pats = [p.strip() for p in images.split(",") if p.strip()]
        unmatched = [p for p in pats if not any(fnmatch.fnmatchcase(i, p) for i in keep_ids)]
        if unmatched:
            raise EvaluationError(f"--images {', '.join(unmatched)} matches no clean test image with a box "
                                  f"(ids look like {', '.join(keep_ids[:3])})")
        keep_ids = [i for i in keep_ids if any(fnmatch.fnmatchcase(i, p) for p in pats)]
    if plan.limit is not None:
        keep_ids = keep_ids[: plan.limit]
    keep = set(keep_ids)
    groups: list[tuple[str, str, int, str, list[int]]] = []
    groups.append(("clean", "clean", 0, layout.CLEAN, [i for i, r in enumerate(clean) if r["image_id"] in keep]))
    for cfg in plan.configs:
        name, lv = layout.parse_config_name(cfg)
        rows = reader.table(cfg)
        groups.append(("perturbation", name, lv, cfg,
                       [i for i, r in enumerate(rows) if r["image_id"] in keep and r.get("bbox")]))
    for method in plan.attacks:
        for lv in plan.levels:
            groups.append(("attack", method, lv, layout.CLEAN, list(groups[0][4])))
    batches: list[Batch] = []
    for kind, name, lv, cfg, idx in groups:
        by_shape: dict[tuple, list[int]] = {}
        for i in idx:
            by_shape.setdefault(reader.shape_of(cfg, i), []).append(i)
        table = reader.table(cfg)
        for shape in sorted(by_shape):
            rows = by_shape[shape]
            for k in range(0, len(rows), plan.batch_size):
                chunk = rows[k : k + plan.batch_size]
                items = tuple(WorkItem(kind, name, lv, cfg, i, table[i]["image_id"]) for i in chunk)
                sh = "x".join(map(str, shape))
                batches.append(Batch(f"{kind}-{name}-l{lv}-{sh}-{k // plan.batch_size:05d}", items))
    return batches


def load_model(plan: EvalPlan, device):
    """The segmenter of the plan on ``device``; construction errors become one-line :class:`EvaluationError`."""
    from medfm_hf.models import create_segmenter

    finetuned = (plan.extra or {}).get("finetuned")
    try:
        if finetuned:  # a finetune.py output folder: base model + the trained strategy, merged
            from medfm_hf.finetune.load import load_finetuned, read_finetuned_config

            tuned = read_finetuned_config(finetuned)["model"]
            if tuned != plan.model:
                raise EvaluationError(f"{finetuned} fine-tuned model {tuned!r}, not --model {plan.model!r}")
            model = load_finetuned(finetuned, device=device, checkpoint=plan.checkpoint)
        else:
            model = create_segmenter(plan.model, checkpoint=plan.checkpoint, device=device, **plan.model_kwargs)
    except EvaluationError:
        raise
    except (TypeError, ValueError, OSError, KeyError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise EvaluationError(f"could not build model {plan.model!r} from {plan.checkpoint!r}: {msg}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. an unpickling error raised by a third-party loader
        raise EvaluationError(f"could not build model {plan.model!r} from {plan.checkpoint!r}: "
                              f"{type(exc).__name__}: {exc}") from None
    if plan.attacks and not getattr(model, "differentiable", False):
        raise EvaluationError(f"model {plan.model!r} is not differentiable: gradient attacks cannot run on it; "
                              "drop --attacks or choose a neural model")
    return model


def batch_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def attack_generator(seed: int, key: str):
    """The seeded generator of a batch's random starts: always a CPU generator, whatever the model's device
    (:func:`medfm_hf.attacks.pgd` draws on the CPU and moves the draw, so results match across devices)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(batch_seed(seed, key))


def run_batch(model, reader, batch: Batch, plan: EvalPlan, device, autocast) -> pd.DataFrame:
    """Predict and score one batch; returns its result rows."""
    import torch

    from medfm_hf.attacks import attack, attack_spec
    from medfm_hf.metrics.segmentation import dice_per_image, iou_per_image
    from medfm_hf.models.base import to_model_input

    t0 = time.perf_counter()
    rows = [reader.row(it.config, it.row) for it in batch.items]
    images = to_model_input([r.image for r in rows], device=device)
    boxes = torch.tensor([r.bbox for r in rows], dtype=torch.float32, device=device)
    first = batch.items[0]
    epsilon = steps = None
    if first.kind == "attack":
        spec = attack_spec(first.name, first.level, plan.step_rule)
        epsilon, steps = spec.epsilon, spec.steps
        masks = torch.from_numpy(np.stack([r.mask for r in rows]).astype(np.float32)).to(device)
        images = attack(model, images, boxes, masks, first.name, first.level, step_rule=plan.step_rule,
                        generator=attack_generator(plan.seed, batch.key))
    with autocast():
        probs = model.predict(images, boxes)
    probs = probs.float().cpu().numpy()
    refs = [r.mask for r in rows]
    ious = iou_per_image(list(probs), refs)
    dices = dice_per_image(list(probs), refs)
    secs = (time.perf_counter() - t0) / len(rows)
    out = []
    for it, r, iou, dice in zip(batch.items, rows, ious, dices):
        pert = it.kind == "perturbation"
        out.append({
            "image_id": it.image_id, "source": r.source, "modality": r.modality, "kind": it.kind, "name": it.name,
            "level": it.level, "strength": r.strength if pert else None, "ssim": r.ssim if pert else None,
            "in_band": r.in_band if pert else None,
            "target_visible_fraction": r.extra.get("target_visible_fraction") if pert else None, "epsilon": epsilon, "steps": steps, "iou": iou, "dice": dice,
            "seconds": secs, "batch": batch.key,
        })
    return pd.DataFrame(out)


def make_accelerator(mixed_precision: str = "no"):
    """An :class:`accelerate.Accelerator` that also shards on CPU-only machines (see the runner)."""
    from medfm_hf.evaluation.runner import make_accelerator as _make

    return _make(mixed_precision)


def evaluate_segmentation(args, accelerator=None) -> dict | None:
    """Run the evaluation described by ``args``; returns the summary (main process) or ``None``."""
    from medfm_hf.evaluation.runner import evaluate

    return evaluate(args, accelerator=accelerator)
