"""A small, honest training loop: fit on ``train`` records, pick the checkpoint on ``validation`` records.

The test split never steers training (the reference project chose its best epoch on the test split that
it then reported robustness on; see LESSONS.md). Loss: ``0.3 * BCE + 0.7 * soft Dice`` (reference recipe).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from medfm_hf.records import Record

logger = logging.getLogger(__name__)


def segmentation_loss(probs: torch.Tensor, masks: torch.Tensor, bce_weight: float = 0.3) -> torch.Tensor:
    """``bce_weight * BCE + (1 - bce_weight) * (1 - soft Dice)``, averaged over the batch."""
    probs = probs.clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy(probs, masks)
    inter = (probs * masks).flatten(1).sum(1)
    dice = (2 * inter + 1.0) / (probs.flatten(1).sum(1) + masks.flatten(1).sum(1) + 1.0)
    return bce_weight * bce + (1 - bce_weight) * (1 - dice).mean()


@dataclass
class TrainResult:
    best_val_iou: float
    best_step: int
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def _tensors(records: Sequence[Record], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from medfm_hf.models.base import to_model_input

    imgs = to_model_input([np.dstack([r.image] * 3) if r.image.ndim == 2 else r.image for r in records],
                          device=device)
    boxes = torch.tensor([r.bbox for r in records], dtype=torch.float32, device=device)
    masks = torch.from_numpy(np.stack([r.mask for r in records]).astype(np.float32)).to(device)
    return imgs, boxes, masks


@torch.no_grad()
def _val_iou(model, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_size: int) -> float:
    imgs, boxes, masks = val
    ious = []
    for k in range(0, len(imgs), batch_size):
        p = model(imgs[k : k + batch_size], boxes[k : k + batch_size]) > 0.5
        m = masks[k : k + batch_size] > 0.5
        inter = (p & m).flatten(1).sum(1).float()
        union = (p | m).flatten(1).sum(1).float()
        ious += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).tolist()
    return float(np.mean(ious))


def train_segmenter(
    model,
    train: Sequence[Record],
    validation: Sequence[Record],
    *,
    groups: Sequence[str] | None = None,
    max_seconds: float = 60.0,
    max_steps: int = 10_000,
    batch_size: int = 8,
    lr: float = 3e-4,
    eval_every: int = 25,
    seed: int = 0,
    box_jitter: float = 0.05,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (a :class:`~medfm_hf.models.base.Segmenter`) in place; keep the best-on-validation weights.

    ``groups`` selects :meth:`trainable_groups` entries (default: all = full fine-tuning). Boxes are jittered
    by up to ``box_jitter`` of their size during training, as prompts are in practice. Training stops at
    ``max_seconds`` or ``max_steps``; the model is returned in eval mode with the best validation weights.
    """
    from tqdm.auto import tqdm

    if not train or not validation:
        raise ValueError("training needs train and validation records (the test split is never used)")
    if any(r.split == "test" for r in [*train, *validation]):
        raise ValueError("test records were passed to training; the test split must never steer training")
    device = model.device
    g = torch.Generator().manual_seed(seed)
    all_groups = model.trainable_groups()
    chosen = list(all_groups) if groups is None else list(groups)
    unknown = [c for c in chosen if c not in all_groups]
    if unknown:
        raise ValueError(f"unknown parameter groups {unknown}; the model has {list(all_groups)}")
    params = [p for c in chosen for p in all_groups[c]]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    timgs, tboxes, tmasks = _tensors(train, device)
    val = _tensors(validation, device)
    best = (_val_iou(model.eval(), val, batch_size), 0, copy.deepcopy(model.state_dict()))
    history = [{"step": 0, "val_iou": best[0]}]
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(total=max_steps, desc="training", unit="step", disable=not progress)
    while step < max_steps and time.perf_counter() - t0 < max_seconds:
        model.train()
        idx = torch.randperm(len(timgs), generator=g)[:batch_size]
        b = tboxes[idx].clone()
        wh = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).repeat(1, 2)
        b = b + (torch.rand(b.shape, generator=g) * 2 - 1).to(device) * box_jitter * wh
        H, W = timgs.shape[-2:]
        b[:, 0::2] = b[:, 0::2].clamp(0, W - 1)
        b[:, 1::2] = b[:, 1::2].clamp(0, H - 1)
        b[:, 2] = torch.maximum(b[:, 2], b[:, 0] + 1)
        b[:, 3] = torch.maximum(b[:, 3], b[:, 1] + 1)
        loss = segmentation_loss(model(timgs[idx], b), tmasks[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        if step % eval_every == 0:
            v = _val_iou(model.eval(), val, batch_size)
            history.append({"step": step, "val_iou": v, "loss": float(loss.detach())})
            if v > best[0]:
                best = (v, step, copy.deepcopy(model.state_dict()))
    bar.close()
    model.load_state_dict(best[2])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    res = TrainResult(best_val_iou=best[0], best_step=best[1], steps=step, seconds=time.perf_counter() - t0,
                      history=history)
    logger.info("trained %d steps in %.0f s; best validation IoU %.3f at step %d", step, res.seconds, best[0], best[1])
    return res
