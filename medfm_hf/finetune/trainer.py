"""The fine-tuning loop, driven by Accelerate (one process, many GPUs, many nodes, or 2 CPU processes).

* **Data**: ``clean/train`` to fit, ``clean/validation`` to select; the test split is never opened
  (:mod:`medfm_hf.finetune.data`).
* **Batches**: a global batch of ``batch_size x processes x gradient_accumulation_steps`` samples is cut from
  the epoch's seeded permutation, and every rank takes its own slice (:func:`~medfm_hf.finetune.data.rank_batches`),
  so the same seed and global batch give the same samples per optimizer step whatever the process count.
  DDP averages the ranks' gradients of per-rank mean losses = the gradient of the global mean loss.
* **Unused parameters**: with box prompts and a mask loss, parts of the prompt encoder (point and mask
  embeddings) and the mask decoder's IoU head get no gradient, and DDP without
  ``find_unused_parameters`` fails on them. Default ``--unused_parameters freeze``: one probe
  forward/backward before training finds the trainable parameters without a gradient and freezes them
  (they could not change anyway: optimizers skip parameters without a gradient); they are listed in the
  output config. ``find`` keeps them and sets DDP's ``find_unused_parameters=True`` instead (an extra
  graph traversal every step).
* **Normalisation**: the model trains in ``train()`` mode except BatchNorm layers, which stay in eval mode
  (their running statistics are kept from pretraining; per-GPU batches of 1-4 would make them noise, and
  per-rank statistics would make 1 and N processes disagree).
* **Selection**: validation IoU (mean over images) at step 0 (the base model) and every ``eval_steps``; the
  best step's trainable weights are what the output folder holds (``selected_step`` 0 means fine-tuning never
  beat the base model on validation).
* **Resume**: the trainable weights, optimizer, scheduler, RNG state, log and best-so-far are written
  atomically to ``<output>/.medfm/last.pt`` every ``save_steps``; a rerun with the same settings continues
  from there and reproduces the uninterrupted run (sample order and augmentation are functions of
  ``(seed, epoch, index)``). The loop itself (optimizer, schedule, resume, selection) is
  :mod:`medfm_hf.finetune.loop`, shared with VLM grounding LoRA.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict

import torch

from medfm_hf.finetune.args import FinetuneArguments
from medfm_hf.finetune.loop import (
    atomic_safetensors,
    finished_run,
    perturbation_augment,
    run_loop,
    schedule,
    write_outputs,
)
from medfm_hf.finetune.strategies import STRATEGIES, StrategyError, apply_strategy, base_fingerprint
from medfm_hf.finetune.train import segmentation_loss

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "adapter"
#: settings that do not change the result (left out of the resume check)
_NOT_SETTINGS = ("output", "dry_run", "no_progress", "num_workers")


class FinetuneError(ValueError):
    """Fine-tuning cannot start or continue: the message says what was wrong and what to do."""


# --------------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------------


def focal_dice_loss(probs: torch.Tensor, masks: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """SAM-Med2D's ``20 * focal + Dice`` (its IoU-MSE term needs the IoU head, which box-only training skips)."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    pt = torch.where(masks > 0.5, p, 1 - p)
    at = torch.where(masks > 0.5, torch.full_like(p, alpha), torch.full_like(p, 1 - alpha))
    focal = (-at * (1 - pt) ** gamma * torch.log(pt)).mean()
    inter = (p * masks).flatten(1).sum(1)
    dice = (2 * inter + 1.0) / (p.flatten(1).sum(1) + masks.flatten(1).sum(1) + 1.0)
    return 20.0 * focal + (1 - dice).mean()


def make_loss(args: FinetuneArguments) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if args.loss == "bce_dice":
        return lambda p, m: segmentation_loss(p, m, args.bce_weight)
    if args.loss == "focal_dice":
        return focal_dice_loss
    raise FinetuneError(f"--loss must be bce_dice or focal_dice, got {args.loss!r}")


# --------------------------------------------------------------------------------------------------------
# checks, settings
# --------------------------------------------------------------------------------------------------------


def check_args(args: FinetuneArguments) -> None:
    """Everything that can be wrong with the arguments, checked before any work."""
    from medfm_hf.models import list_segmenters

    if args.model not in list_segmenters():
        raise FinetuneError(f"unknown model {args.model!r}; available: {', '.join(list_segmenters())}")
    if args.strategy not in STRATEGIES:
        raise FinetuneError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {args.strategy!r}")
    if args.dry_run:
        return
    if not args.dataset or not args.output:
        raise FinetuneError("--dataset and --output are required (or pass --dry_run for the strategy table)")
    for name in ("batch_size", "gradient_accumulation_steps", "image_size", "lora_rank"):
        if getattr(args, name) < 1:
            raise FinetuneError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_steps < 0 or args.epochs < 1 and args.max_steps == 0:
        raise FinetuneError("give --epochs >= 1 or --max_steps >= 1")
    if args.optimizer not in ("adamw", "adam"):
        raise FinetuneError(f"--optimizer must be adamw or adam, got {args.optimizer!r}")
    if args.lr_scheduler not in ("constant", "linear", "cosine"):
        raise FinetuneError(f"--lr_scheduler must be constant, linear or cosine, got {args.lr_scheduler!r}")
    if args.unused_parameters not in ("freeze", "find"):
        raise FinetuneError(f"--unused_parameters must be freeze or find, got {args.unused_parameters!r}")
    if args.mixed_precision not in ("no", "fp16", "bf16"):
        raise FinetuneError(f"--mixed_precision must be no, fp16 or bf16, got {args.mixed_precision!r}")
    if not 0 <= args.perturbation_prob <= 1:
        raise FinetuneError(f"--perturbation_prob must lie in [0, 1], got {args.perturbation_prob}")
    make_loss(args)
    _model_kwargs(args)


def _model_kwargs(args) -> dict:
    try:
        kw = json.loads(args.model_kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise FinetuneError(f"--model_kwargs is not valid JSON: {exc}") from exc
    if not isinstance(kw, dict):
        raise FinetuneError("--model_kwargs must be a JSON object, e.g. '{\"size\": \"tiny\"}'")
    return kw


def settings_of(args: FinetuneArguments) -> dict:
    return {k: v for k, v in asdict(args).items() if k not in _NOT_SETTINGS}


def build_base(args: FinetuneArguments, device=None):
    """The segmenter of ``args`` with its base weights (every parameter frozen)."""
    from medfm_hf.models import create_segmenter

    if args.checkpoint and not os.path.exists(args.checkpoint) and (
        os.path.isabs(args.checkpoint) or args.checkpoint.startswith(".")
        or args.checkpoint.endswith((".pth", ".pt", ".bin", ".safetensors"))
    ):
        raise FinetuneError(f"checkpoint {args.checkpoint!r} does not exist; pass a local file/folder or a Hub id")
    return create_segmenter(args.model, checkpoint=args.checkpoint, device=device, **_model_kwargs(args))


# --------------------------------------------------------------------------------------------------------
# strategy table (--dry_run)
# --------------------------------------------------------------------------------------------------------


def strategy_table(args: FinetuneArguments, strategies: tuple[str, ...] = STRATEGIES) -> list[dict]:
    """Trainable parameters of every strategy for ``args.model`` (no training, no data)."""
    base = build_base(args)
    rows = []
    for s in strategies:
        try:
            plan = apply_strategy(copy.deepcopy(base), s, args.strategy_options(), seed=args.seed)
        except StrategyError as exc:
            rows.append({"model": args.model, "strategy": s, "trainable": None, "total": None, "percent": None,
                         "trains": f"not applicable: {exc}"})
            continue
        what = "all parameters" if s == "full" else ", ".join(plan.groups)
        if plan.lora_targets:
            what = f"LoRA r={args.lora_rank} on {len(plan.lora_targets)} Linear layers"
        if plan.adapter_blocks:
            what = f"{len(plan.adapter_blocks)} inserted adapters (width {plan.adapter_width}) + mask_decoder"
        rows.append({"model": args.model, "strategy": s, "trainable": plan.trainable_params,
                     "total": plan.total_params, "percent": 100.0 * plan.trainable_params / max(1, plan.total_params),
                     "trains": what})
    return rows


def format_strategy_table(rows: list[dict]) -> str:
    head = f"{'strategy':<16} {'trainable':>12} {'total':>12} {'%':>7}  trains"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["trainable"] is None:
            lines.append(f"{r['strategy']:<16} {'-':>12} {'-':>12} {'-':>7}  {r['trains']}")
            continue
        lines.append(f"{r['strategy']:<16} {r['trainable']:>12,} {r['total']:>12,} {r['percent']:>7.3f}  {r['trains']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# helpers of the loop
# --------------------------------------------------------------------------------------------------------


def _set_train_mode(model: torch.nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze_unused(model: torch.nn.Module, batch: dict, loss_fn, device) -> list[str]:
    """Freeze the trainable parameters that get no gradient from one forward/backward on ``batch``."""
    _set_train_mode(model)
    for p in model.parameters():
        p.grad = None
    probs = model(batch["image"].to(device), batch["box"].to(device))
    loss_fn(probs.float(), batch["mask"].to(device)).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for n, p in model.named_parameters():
        p.grad = None
        if n in unused:
            p.requires_grad_(False)
    model.eval()
    return unused


@torch.no_grad()
def validate(model, dataset, accelerator, batch_size: int) -> dict:
    """Mean IoU and Dice (threshold 0.5; both-empty = 1) over the validation set, sharded over the ranks."""
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(dataset), world))
    per_rank = math.ceil(len(dataset) / world)
    rows = []
    for k in range(0, len(mine), batch_size):
        items = [dataset[(0, i)] for i in mine[k:k + batch_size]]
        img = torch.stack([i["image"] for i in items]).to(accelerator.device)
        box = torch.stack([i["box"] for i in items]).to(accelerator.device)
        m = torch.stack([i["mask"] for i in items]).to(accelerator.device) > 0.5
        with accelerator.autocast():
            p = model(img, box).float() > 0.5
        inter = (p & m).flatten(1).sum(1).float()
        union = (p | m).flatten(1).sum(1).float()
        tot = p.flatten(1).sum(1).float() + m.flatten(1).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        dice = torch.where(tot > 0, 2 * inter / tot.clamp(min=1), torch.ones_like(tot))
        idx = torch.tensor([i["index"] for i in items], dtype=torch.float64, device=accelerator.device)
        rows.append(torch.stack([idx, iou.double(), dice.double()], 1))
    local = torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.float64, device=accelerator.device)
    pad = torch.full((per_rank - len(local), 3), -1.0, dtype=torch.float64, device=accelerator.device)
    allv = accelerator.gather(torch.cat([local, pad]))
    allv = allv[allv[:, 0] >= 0]
    allv = allv[torch.argsort(allv[:, 0])]
    return {"iou": float(allv[:, 1].mean()), "dice": float(allv[:, 2].mean()), "n": int(len(allv))}


def _versions() -> dict:
    import accelerate
    import peft
    import transformers

    from medfm_hf import __version__

    return {"medfm_hf": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__}


def make_accelerator(args: FinetuneArguments):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = [DistributedDataParallelKwargs(find_unused_parameters=args.unused_parameters == "find")]
    if not torch.cuda.is_available():
        # cpu=True is what makes Accelerate start a gloo process group for several CPU processes under
        # `accelerate launch` (otherwise every process believes it is alone); bf16 autocast works on CPU
        return Accelerator(cpu=True, mixed_precision="bf16" if args.mixed_precision == "bf16" else "no",
                           kwargs_handlers=handlers)
    return Accelerator(mixed_precision=args.mixed_precision, kwargs_handlers=handlers)


# --------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------


class _SegmentationSteps:
    """One optimizer step of a segmenter: forward/backward over this rank's accumulation micro-batches."""

    def __init__(self, train_ds, loss_fn, accelerator, acc: int, num_workers: int):
        self.ds, self.loss_fn, self.accelerator, self.acc, self.num_workers = train_ds, loss_fn, accelerator, acc, num_workers
        self.it = None

    def start_epoch(self, epoch: int, micro: list, first: int) -> None:
        from medfm_hf.finetune.data import collate

        loader = torch.utils.data.DataLoader(self.ds, batch_sampler=micro[first * self.acc:], collate_fn=collate,
                                             num_workers=self.num_workers)
        self.it = iter(loader)

    def step(self, model, j: int, params) -> tuple[float, list[str], dict]:
        accel, dev = self.accelerator, self.accelerator.device
        _set_train_mode(model)
        losses, ids = [], []
        for a in range(self.acc):
            batch = next(self.it)
            ids += [self.ds.image_ids[i] for i in batch["index"].tolist()]
            sync = contextlib.nullcontext() if a == self.acc - 1 else accel.no_sync(model)
            with sync:
                with accel.autocast():
                    probs = model(batch["image"].to(dev), batch["box"].to(dev))
                loss = self.loss_fn(probs.float(), batch["mask"].to(dev))
                accel.backward(loss / self.acc)
            losses.append(loss.detach())
        return float(accel.reduce(torch.stack(losses).mean(), reduction="mean")), ids, {}


def run_finetune(args: FinetuneArguments, accelerator=None, *, step_callback: Callable[[int], None] | None = None,
                 ) -> dict | None:
    """Fine-tune ``args.model`` with ``args.strategy``; returns the output config (main process) or ``None``.

    ``step_callback(step)`` is called after every optimizer step (after the resume checkpoint of that step is
    written); tests raise from it to simulate a kill.
    """
    from medfm_hf.finetune.data import (
        SegmentationSplit,
        collate,
        rank_batches,
        read_split,
        resolve_dataset,
    )

    check_args(args)
    out = os.path.abspath(args.output)
    settings = settings_of(args)
    done = finished_run(out, settings, FinetuneError)
    if done is not None:
        return done

    # ---- data (clean/train and clean/validation only) -------------------------------------------------
    dataset = resolve_dataset(args.dataset)
    train_rows = read_split(dataset, "train")
    val_rows = read_split(dataset, "validation")
    perturb = perturbation_augment(args, FinetuneError)
    train_ds = SegmentationSplit(train_rows, size=args.image_size, seed=args.seed, train=True, augment=args.augment,
                                 box_jitter=args.box_jitter, perturb=perturb)
    val_ds = SegmentationSplit(val_rows, size=args.image_size, seed=args.seed, train=False)

    accelerator = accelerator or make_accelerator(args)
    rank, world = accelerator.process_index, accelerator.num_processes
    acc = args.gradient_accumulation_steps
    global_batch, steps_per_epoch, total = schedule(args, len(train_ds), world, FinetuneError, "images")
    loss_fn = make_loss(args)

    # ---- model and strategy -----------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    base = build_base(args)
    fingerprint = base_fingerprint(base)
    plan = apply_strategy(base, args.strategy, args.strategy_options(), seed=args.seed)
    model = plan.model.to(accelerator.device)
    frozen_unused: list[str] = []
    if args.unused_parameters == "freeze":
        first = rank_batches(len(train_ds), seed=args.seed, epoch=0, per_device=args.batch_size, world=world,
                             rank=rank, accumulation=acc)[0]
        frozen_unused = freeze_unused(model, collate([train_ds[i] for i in first]), loss_fn,
                                       accelerator.device)
        if frozen_unused:
            logger.info("froze %d trainable tensors that get no gradient with box prompts and a mask loss: %s",
                        len(frozen_unused), ", ".join(frozen_unused[:6]) + (" ..." if len(frozen_unused) > 6 else ""))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise FinetuneError(f"strategy {args.strategy!r} leaves nothing to train on {args.model}")

    res = run_loop(
        args=args, accelerator=accelerator, model=model, names=names, out=out, settings=settings,
        n_train=len(train_ds), steps_per_epoch=steps_per_epoch, total=total,
        runner=_SegmentationSteps(train_ds, loss_fn, accelerator, acc, args.num_workers),
        validate=lambda m: validate(m, val_ds, accelerator, args.batch_size),
        better=lambda v, best: v["iou"] > best["iou"], best={"step": -1, "iou": -1.0, "dice": -1.0},
        desc=f"fine-tuning {args.model} ({args.strategy})", postfix=("best_iou", "iou"), error=FinetuneError,
        step_callback=step_callback,
    )
    unwrapped, best, log, step = res.unwrapped, res.best, res.log, res.step
    own_params = dict(unwrapped.named_parameters())

    # ---- export the selected checkpoint (loaded back by the loop) -------------------------------------------
    result = None
    if accelerator.is_main_process:
        fmt = "peft_lora" if args.strategy == "lora" else "safetensors"
        if fmt == "peft_lora":
            unwrapped.save_pretrained(os.path.join(out, ADAPTER_DIR))
        else:
            atomic_safetensors({n: own_params[n] for n in names}, os.path.join(out, WEIGHTS_NAME),
                                metadata={"strategy": args.strategy, "model": args.model})
        train_seconds = log["steps"][-1]["seconds"] if log["steps"] else 0.0
        result = {
            "format": fmt,
            "model": args.model,
            "checkpoint": args.checkpoint,
            "model_kwargs": _model_kwargs(args),
            "base_fingerprint": fingerprint,
            "strategy": args.strategy,
            "strategy_options": asdict(args.strategy_options()),
            "trainable_params": res.n_trainable,
            "trainable_params_by_strategy": plan.trainable_params,
            "total_params": plan.total_params,
            "trained_groups": plan.groups,
            "lora_targets": plan.lora_targets,
            "adapter_blocks": plan.adapter_blocks,
            "adapter_width": plan.adapter_width,
            "frozen_unused": frozen_unused,
            "unused_parameters": args.unused_parameters,
            "selected_step": best["step"],
            "selected_validation": {"iou": best["iou"], "dice": best["dice"]},
            "steps": step,
            "steps_per_epoch": steps_per_epoch,
            "global_batch": global_batch,
            "processes": world,
            "train_images": len(train_ds),
            "validation_images": len(val_ds),
            "train_seconds": train_seconds,
            "resumed": res.resumed,
            "arguments": settings,
            "versions": _versions(),
        }
        write_outputs(out, result, log)
        logger.info("selected step %d (validation IoU %.4f); wrote %s", best["step"], best["iou"], out)
    accelerator.wait_for_everyone()
    return result

