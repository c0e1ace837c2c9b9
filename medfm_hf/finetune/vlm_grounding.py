"""LoRA fine-tuning of a vision-language model for visual grounding, in a plain Accelerate loop.

``finetune.py --task grounding --model {medgemma,medgemma-1.5,llava_med,hf} --strategy lora``:

* **Where LoRA goes**: by default the language model only, through a regex on the module path
  (:data:`~medfm_hf.finetune.vlm_args.LM_PATTERN`); ``--vlm_lora_modules`` adds ``vision_tower`` (LoRA on the
  vision encoder blocks) and/or ``projector`` (trained fully). Everything else stays bit-identical.
* **Loss**: token cross-entropy on the answer tokens only (prompt and image tokens masked,
  :mod:`medfm_hf.finetune.vlm_data`), summed and divided by the number of answer tokens of the whole
  *global* batch (every process, every accumulation micro-batch), so 1 and N processes take the same step.
* **Data**: ``clean/train`` to fit, ``clean/validation`` to select (greedy answers parsed in the family's box
  convention, Acc@IoU 0.5, ties broken by mean IoU, then by fewer unparsable answers); ``test`` is never
  opened. Samples are functions of
  ``(seed, epoch, index)`` and the global batches are cut as for the segmenters
  (:func:`~medfm_hf.finetune.data.rank_batches`).
* **Resume**: LoRA weights, optimizer, scheduler, RNG, log and best-so-far in ``<output>/.medfm/last.pt``
  (:mod:`medfm_hf.finetune.loop`).
* **Output**: ``adapter/`` (PEFT), ``finetune_config.json`` (base model id, revision and weight fingerprint,
  LoRA settings, selected step) and ``training_log.json``; :func:`load_finetuned_vlm` reads it back merged.

Why not TRL's ``SFTTrainer``: TRL is not a dependency here, and the guarantees above (global-token loss
normalisation shared with 1-vs-N-process tests, selection by a *generation* metric on validation, the exact
inference prompt as training prefix, the segmenters' batch/resume layout) would each need a callback or an
override; the loop (:mod:`medfm_hf.finetune.loop`, shared with the segmenters) runs unchanged under
``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from medfm_hf.finetune.args import FinetuneArguments
from medfm_hf.finetune.vlm_args import (
    LORA_MODULES,
    PROJECTOR_MODULE,
    TASKS,
    VLMGroundingArguments,
)
from medfm_hf.finetune.vlm_data import IGNORE_INDEX, GroundingSplit, encode_training_batch

logger = logging.getLogger(__name__)

VLM_FAMILIES = ("medgemma", "medgemma-1.5", "llava_med", "hf")
FORMAT = "peft_lora_vlm"
#: FinetuneArguments fields that only segmentation uses (a grounding run refuses non-default values)
SEGMENTATION_ONLY = ("encoder_blocks", "lora_targets", "lora_encoder_pattern", "lora_decoder_pattern",
                     "adapter_width", "adapter_scale", "adapter_site", "loss", "bce_weight", "image_size",
                     "box_jitter", "augment", "unused_parameters")


def _error(msg: str) -> Exception:
    from medfm_hf.finetune.trainer import FinetuneError

    return FinetuneError(msg)


# --------------------------------------------------------------------------------------------------------
# checks and LoRA placement
# --------------------------------------------------------------------------------------------------------


def check_grounding_args(args: FinetuneArguments, vargs: VLMGroundingArguments) -> None:
    """Everything that can be wrong with a grounding run's arguments, checked before any work."""
    if vargs.task not in TASKS:
        raise _error(f"--task must be one of {', '.join(TASKS)}, got {vargs.task!r}")
    if args.model not in VLM_FAMILIES:
        raise _error(f"--task grounding fine-tunes a vision-language model: --model must be one of "
                     f"{', '.join(VLM_FAMILIES)}, got {args.model!r}")
    if args.strategy != "lora":
        raise _error(f"--task grounding supports --strategy lora only, got {args.strategy!r}")
    defaults = FinetuneArguments(model=args.model)
    changed = [n for n in SEGMENTATION_ONLY if getattr(args, n) != getattr(defaults, n)]
    if changed:
        raise _error(f"--{changed[0]} applies to segmentation only; drop it for --task grounding")
    modules = lora_modules(vargs)
    if not {"language_model", "vision_tower"} & set(modules):
        raise _error("--vlm_lora_modules needs language_model and/or vision_tower (projector alone is not LoRA)")
    for name in ("vlm_lm_pattern", "vlm_vision_pattern"):
        try:
            re.compile(getattr(vargs, name))
        except re.error as exc:
            raise _error(f"--{name} is not a valid regex: {exc}") from exc
    if vargs.vlm_dtype not in ("", "bfloat16", "bf16", "float32", "fp32", "float16", "fp16"):
        raise _error(f"--vlm_dtype must be bfloat16 or float32, got {vargs.vlm_dtype!r}")
    if vargs.max_new_tokens < 8:
        raise _error(f"--max_new_tokens must be >= 8 to hold a box, got {vargs.max_new_tokens}")
    if args.dry_run:
        return
    if not args.dataset or not args.output:
        raise _error("--dataset and --output are required")
    for name in ("batch_size", "gradient_accumulation_steps", "lora_rank"):
        if getattr(args, name) < 1:
            raise _error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_steps < 0 or args.epochs < 1 and args.max_steps == 0:
        raise _error("give --epochs >= 1 or --max_steps >= 1")
    if args.optimizer not in ("adamw", "adam"):
        raise _error(f"--optimizer must be adamw or adam, got {args.optimizer!r}")
    if args.lr_scheduler not in ("constant", "linear", "cosine"):
        raise _error(f"--lr_scheduler must be constant, linear or cosine, got {args.lr_scheduler!r}")
    if args.mixed_precision not in ("no", "fp16", "bf16"):
        raise _error(f"--mixed_precision must be no, fp16 or bf16, got {args.mixed_precision!r}")
    if not 0 <= args.perturbation_prob <= 1:
        raise _error(f"--perturbation_prob must lie in [0, 1], got {args.perturbation_prob}")


def lora_modules(vargs: VLMGroundingArguments) -> list[str]:
    mods = [m.strip() for m in vargs.vlm_lora_modules.split(",") if m.strip()]
    bad = [m for m in mods if m not in LORA_MODULES]
    if bad:
        raise _error(f"--vlm_lora_modules: unknown {bad[0]!r}; choose from {', '.join(LORA_MODULES)}")
    return mods


def is_gemma3(model: Any) -> bool:
    return str(getattr(model.config, "model_type", "")).startswith("gemma3")


def lora_config(args: FinetuneArguments, vargs: VLMGroundingArguments):
    """The PEFT ``LoraConfig``: one regex (full match on module paths) over the chosen parts."""
    from peft import LoraConfig

    mods = lora_modules(vargs)
    parts = []
    if "language_model" in mods:
        parts.append(vargs.vlm_lm_pattern)
    if "vision_tower" in mods:
        parts.append(vargs.vlm_vision_pattern)
    if not parts:
        raise _error("--vlm_lora_modules needs language_model or vision_tower (projector alone is not LoRA)")
    pattern = parts[0] if len(parts) == 1 else "|".join(f"(?:{p})" for p in parts)
    return LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=pattern, bias="none",
                      modules_to_save=[PROJECTOR_MODULE] if "projector" in mods else None)


def apply_vlm_lora(model: Any, args: FinetuneArguments, vargs: VLMGroundingArguments):
    """Wrap ``model`` (every parameter frozen) with LoRA; returns ``(peft_model, wrapped module names)``."""
    from peft import get_peft_model

    cfg = lora_config(args, vargs)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        peft_model = get_peft_model(model, cfg)
    except ValueError as exc:
        raise _error(f"LoRA found no target module ({str(exc).splitlines()[0]}); check --vlm_lm_pattern / "
                     "--vlm_vision_pattern against the model's module names") from exc
    targets = sorted({n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")})
    return peft_model, targets


# --------------------------------------------------------------------------------------------------------
# base model
# --------------------------------------------------------------------------------------------------------


def model_kwargs_of(args: FinetuneArguments) -> dict:
    try:
        kw = json.loads(args.model_kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise _error(f"--model_kwargs is not valid JSON: {exc}") from exc
    if not isinstance(kw, dict):
        raise _error("--model_kwargs must be a JSON object, e.g. '{\"size\": \"tiny\"}'")
    return kw


def build_base_vlm(family: str, checkpoint: str | None, model_kwargs: dict, *, device: Any = "cpu",
                   dtype: str | None = None):
    """The family's :class:`~medfm_hf.vlm.local.TransformersVLM` with frozen base weights."""
    from medfm_hf.vlm import create_vlm

    kw = dict(model_kwargs)
    kw.setdefault("device", device)
    if dtype:
        kw["dtype"] = dtype
    try:
        return create_vlm(family, checkpoint=checkpoint, **kw)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise _error(f"cannot build {family}: {exc}") from exc


def base_identity(vlm: Any) -> dict:
    """Base model id/revision and the SHA-256 of its weights (names, dtypes, shapes, bytes)."""
    from medfm_hf.finetune.strategies import base_fingerprint

    return {"model_id": vlm.model_id, "revision": getattr(vlm.model.config, "_commit_hash", None),
            "fingerprint": base_fingerprint(vlm.model), "model_type": getattr(vlm.model.config, "model_type", None)}


# --------------------------------------------------------------------------------------------------------
# loss, validation
# --------------------------------------------------------------------------------------------------------

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")


def answer_loss_sum(model: Any, batch: dict[str, torch.Tensor], device: Any, dtype: torch.dtype) -> torch.Tensor:
    """Sum over the labelled (answer) tokens of the next-token cross-entropy, in float32."""
    inputs = {k: v.to(device) for k, v in batch.items() if k in _MODEL_INPUTS}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"].to(device)[:, 1:]
    sel = labels != IGNORE_INDEX
    return F.cross_entropy(logits[:, :-1][sel].float(), labels[sel], reduction="sum")


@torch.no_grad()
def validate_grounding(vlm: Any, dataset: GroundingSplit, accelerator: Any, batch_size: int,
                       max_new_tokens: int) -> dict:
    """Greedy answers on the validation split (sharded over ranks), parsed in the family's box convention:
    Acc@IoU 0.5 and 0.3, mean IoU, unparsable rate."""
    from medfm_hf.metrics.boxes import box_iou
    from medfm_hf.vlm import GenerationConfig

    vlm.model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(dataset), world))
    per_rank = math.ceil(len(dataset) / world)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    rows = []
    for k in range(0, len(mine), batch_size):
        exs = [dataset[(0, i)] for i in mine[k:k + batch_size]]
        with accelerator.autocast():
            resp = vlm.generate([(e.image, e.prompt) for e in exs], cfg)
        for e, r in zip(exs, resp):
            h, w = e.image.shape[:2]
            parsed = vlm.box_convention.parse(r.text, (w, h)) if r.ok else None
            iou = box_iou(parsed.box, e.box) if parsed is not None else 0.0
            rows.append([float(e.index), float(iou), 0.0 if parsed is not None else 1.0])
    local = torch.tensor(rows, dtype=torch.float64).reshape(-1, 3).to(accelerator.device)
    pad = torch.full((per_rank - len(local), 3), -1.0, dtype=torch.float64, device=accelerator.device)
    allv = accelerator.gather(torch.cat([local, pad]))
    allv = allv[allv[:, 0] >= 0]
    allv = allv[torch.argsort(allv[:, 0])]
    iou = allv[:, 1]
    return {"acc@0.5": float((iou >= 0.5).double().mean()), "acc@0.3": float((iou >= 0.3).double().mean()),
            "mean_iou": float(iou.mean()), "unparsable_rate": float(allv[:, 2].mean()), "n": int(len(allv))}


def _better(v: dict, best: dict) -> bool:
    """Selection order: Acc@0.5, then mean IoU, then fewer unparsable answers; the earlier step wins a tie."""
    return (v["acc@0.5"], v["mean_iou"], -v["unparsable_rate"]) > \
        (best["acc@0.5"], best["mean_iou"], -best.get("unparsable_rate", 1.0))


def freeze_unused_lora(model: Any, batch: dict, device: Any, dtype: torch.dtype) -> list[str]:
    """Freeze trainable tensors that get no gradient (e.g. LoRA on the CLIP layer after LLaVA's feature
    layer -2, whose output the model never uses); DDP would otherwise fail on them."""
    model.train()
    for p in model.parameters():
        p.grad = None
    answer_loss_sum(model, batch, device, dtype).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for n, p in model.named_parameters():
        p.grad = None
        if n in unused:
            p.requires_grad_(False)
    return unused


# --------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------


def grounding_settings(args: FinetuneArguments, vargs: VLMGroundingArguments) -> dict:
    from medfm_hf.finetune.trainer import settings_of

    s = settings_of(args)
    s.update(asdict(vargs))
    return s


class _GroundingSteps:
    """One optimizer step of grounding LoRA: answer-token cross-entropy over this rank's micro-batches,
    normalised by the answer tokens of the whole global batch."""

    def __init__(self, vlm: Any, train_ds: GroundingSplit, accelerator: Any, acc: int, dtype: torch.dtype,
                 max_grad_norm: float):
        self.vlm, self.ds, self.accelerator, self.acc, self.dtype = vlm, train_ds, accelerator, acc, dtype
        self.max_grad_norm = max_grad_norm
        self.micro: list = []

    def start_epoch(self, epoch: int, micro: list, first: int) -> None:
        self.micro = micro

    def step(self, model: Any, j: int, params: list[torch.Tensor]) -> tuple[float, list[str], dict]:
        accel, acc = self.accelerator, self.acc
        world = accel.num_processes
        model.train()
        chunks = [self.micro[j * acc + a] for a in range(acc)]
        batches = [encode_training_batch(self.vlm, [self.ds[i] for i in chunk]) for chunk in chunks]
        ids = [self.ds.image_ids[i] for chunk in chunks for _, i in chunk]
        local_tokens = sum(int(b["answer_tokens"].sum()) for b in batches)
        n_tokens = float(accel.reduce(torch.tensor(float(local_tokens), device=accel.device), reduction="sum"))
        sums = []
        for a, b in enumerate(batches):
            sync = accel.no_sync(model) if a < acc - 1 else contextlib.nullcontext()
            with sync:
                with accel.autocast():
                    s = answer_loss_sum(model, b, accel.device, self.dtype)
                # DDP averages gradients over ranks: scale so the sum is sum(CE) / global answer tokens
                accel.backward(s * world / n_tokens)
            sums.append(s.detach())
        if self.max_grad_norm > 0:
            accel.clip_grad_norm_(params, self.max_grad_norm)
        mean_loss = float(accel.reduce(torch.stack(sums).sum(), reduction="sum")) / n_tokens
        return mean_loss, ids, {"answer_tokens": int(n_tokens)}


def run_grounding_finetune(args: FinetuneArguments, vargs: VLMGroundingArguments, accelerator: Any = None, *,
                           step_callback: Callable[[int], None] | None = None) -> dict | None:
    """Fine-tune ``args.model`` for grounding with LoRA; returns the output config (main process) or ``None``.

    ``step_callback(step)`` runs after every optimizer step (after that step's resume checkpoint); tests
    raise from it to simulate a kill.
    """
    from medfm_hf.finetune.data import rank_batches, resolve_dataset
    from medfm_hf.finetune.loop import finished_run, perturbation_augment, run_loop, schedule, write_outputs
    from medfm_hf.finetune.trainer import ADAPTER_DIR, _versions, make_accelerator
    from medfm_hf.finetune.vlm_data import format_box, read_grounding_split

    check_grounding_args(args, vargs)
    out = os.path.abspath(args.output)
    settings = grounding_settings(args, vargs)
    done = finished_run(out, settings, _error)
    if done is not None:
        return done

    # ---- data (clean/train and clean/validation only) -------------------------------------------------
    dataset = resolve_dataset(args.dataset)
    train_rows = read_grounding_split(dataset, "train")
    val_rows = read_grounding_split(dataset, "validation")
    perturb = perturbation_augment(args, _error)

    accelerator = accelerator or make_accelerator(args)
    rank, world = accelerator.process_index, accelerator.num_processes
    acc = args.gradient_accumulation_steps
    global_batch, steps_per_epoch, total = schedule(args, len(train_rows), world, _error, "grounding rows")

    # ---- model and LoRA ------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    model_kwargs = model_kwargs_of(args)
    vlm = build_base_vlm(args.model, args.checkpoint, model_kwargs, device=accelerator.device,
                         dtype=vargs.vlm_dtype or None)
    if is_gemma3(vlm.model) and (args.mixed_precision == "fp16" or vlm.dtype == torch.float16):
        raise _error("float16 gives empty output for Gemma 3 models (transformers#36822); use --mixed_precision "
                     "bf16 and/or --vlm_dtype bfloat16")
    identity = base_identity(vlm)
    train_ds = GroundingSplit(train_rows, vlm, seed=args.seed, train=True, perturb=perturb)
    val_ds = GroundingSplit(val_rows, vlm, seed=args.seed, train=False)
    peft_model, targets = apply_vlm_lora(vlm.model, args, vargs)
    if vargs.gradient_checkpointing:
        if hasattr(vlm.model, "activation_checkpointing_enable"):  # transformers >= 5.24 name
            vlm.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model.to(accelerator.device)
    dtype = vlm.dtype
    first = rank_batches(len(train_ds), seed=args.seed, epoch=0, per_device=args.batch_size, world=world,
                         rank=rank, accumulation=acc)[0]
    frozen_unused = freeze_unused_lora(peft_model, encode_training_batch(vlm, [train_ds[i] for i in first]),
                                       accelerator.device, dtype)
    if frozen_unused:
        logger.info("froze %d LoRA tensors that get no gradient: %s", len(frozen_unused), ", ".join(frozen_unused[:4]))
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    n_total = sum(p.numel() for p in peft_model.parameters())

    def validate(model: Any) -> dict:
        view = vlm.with_options(model=accelerator.unwrap_model(model), cache=None)
        return validate_grounding(view, val_ds, accelerator, args.batch_size, vargs.max_new_tokens)

    res = run_loop(
        args=args, accelerator=accelerator, model=peft_model, names=names, out=out, settings=settings,
        n_train=len(train_ds), steps_per_epoch=steps_per_epoch, total=total,
        runner=_GroundingSteps(vlm, train_ds, accelerator, acc, dtype, vargs.max_grad_norm),
        validate=validate, better=_better,
        best={"step": -1, "acc@0.5": -1.0, "mean_iou": -1.0, "unparsable_rate": 2.0},
        desc=f"fine-tuning {args.model} (grounding, lora)", postfix=("best_acc", "acc@0.5"), error=_error,
        step_callback=step_callback,
    )
    unwrapped, best, log, step = res.unwrapped, res.best, res.log, res.step

    # ---- export the selected adapter (loaded back by the loop; step 0 = the base model, LoRA B = 0) ---------
    result = None
    if accelerator.is_main_process:
        unwrapped.save_pretrained(os.path.join(out, ADAPTER_DIR))
        ex = val_ds[(0, 0)]
        result = {
            "format": FORMAT,
            "task": "grounding",
            "model": args.model,
            "checkpoint": args.checkpoint,
            "model_kwargs": model_kwargs,
            "vlm_dtype": vargs.vlm_dtype,
            "base_model_id": identity["model_id"],
            "base_revision": identity["revision"],
            "base_model_type": identity["model_type"],
            "base_dtype": str(dtype).removeprefix("torch."),
            "base_fingerprint": identity["fingerprint"],
            "strategy": "lora",
            "lora": {"r": args.lora_rank, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                     "modules": lora_modules(vargs), "target_regex": lora_config(args, vargs).target_modules,
                     "wrapped": len(targets)},
            "lora_targets": targets,
            "trainable_params": res.n_trainable,
            "total_params": n_total,
            "frozen_unused": frozen_unused,
            "box_convention": {"box_format": vlm.box_convention.box_format, "frame": vlm.box_convention.frame,
                               "instruction": vlm.box_convention.instruction},
            "example": {"prompt": ex.prompt, "answer": format_box(ex.box, vlm.box_convention,
                                                                  (ex.image.shape[1], ex.image.shape[0]))},
            "selected_step": best["step"],
            "selected_validation": {"acc@0.5": best["acc@0.5"], "mean_iou": best["mean_iou"],
                                    "unparsable_rate": best["unparsable_rate"]},
            "selection": "clean/validation Acc@IoU0.5, then mean IoU, then fewer unparsable answers (test never read)",
            "steps": step,
            "steps_per_epoch": steps_per_epoch,
            "global_batch": global_batch,
            "processes": world,
            "train_images": len(train_ds),
            "validation_images": len(val_ds),
            "train_seconds": log["steps"][-1]["seconds"] if log["steps"] else 0.0,
            "resumed": res.resumed,
            "arguments": settings,
            "versions": _versions(),
        }
        write_outputs(out, result, log)
        logger.info("selected step %d (validation Acc@0.5 %.4f); wrote %s", best["step"], best["acc@0.5"], out)
    accelerator.wait_for_everyone()
    return result


# --------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------


def load_finetuned_vlm(folder: str, *, device: Any = "cpu", dtype: str | None = None, checkpoint: str | None = None,
                       check_fingerprint: bool = True, batch_size: int = 1, cache: Any = None):
    """The fine-tuned vision-language model of ``folder`` (LoRA merged into the weights, eval mode, frozen).

    The base is rebuilt from the recorded family, checkpoint (or ``checkpoint``, when the base weights moved)
    and options, in the dtype it was trained in, on ``device``; its weights must have the recorded SHA-256
    fingerprint. The LoRA is merged, then the model is cast to ``dtype`` when given. The returned model's
    ``model_id`` (its response-cache identity) names the adapter, so cached base answers are never reused.
    """
    import hashlib

    from peft import PeftModel

    from medfm_hf.finetune.load import FinetunedLoadError, read_finetuned_config
    from medfm_hf.finetune.strategies import base_fingerprint
    from medfm_hf.finetune.trainer import ADAPTER_DIR
    from medfm_hf.vlm.local import resolve_dtype

    cfg = read_finetuned_config(folder)
    if cfg.get("format") != FORMAT:
        raise FinetunedLoadError(f"{folder!r} holds a {cfg.get('format')!r} fine-tune, not a grounding LoRA; load "
                                 "it with medfm_hf.finetune.load_finetuned")
    kw = dict(cfg.get("model_kwargs") or {})
    kw["batch_size"] = batch_size
    if cache is not None:
        kw["cache"] = cache
    base_dtype = cfg.get("base_dtype") or cfg.get("vlm_dtype") or None
    vlm = build_base_vlm(cfg["model"], checkpoint if checkpoint is not None else cfg.get("checkpoint"), kw,
                         device=device, dtype=base_dtype)
    if check_fingerprint:
        fp = base_fingerprint(vlm.model)
        if fp != cfg["base_fingerprint"]:
            raise FinetunedLoadError(
                f"the base weights of {cfg['model']} ({vlm.model_id}, {base_dtype}) are not those {folder!r} was "
                f"fine-tuned from ({fp[:19]}... vs {cfg['base_fingerprint'][:19]}...); pass the original base "
                "checkpoint")
    adapter = os.path.join(folder, ADAPTER_DIR)
    merged = PeftModel.from_pretrained(vlm.model, adapter).merge_and_unload()
    if dtype is not None:
        merged.to(resolve_dtype(dtype, device))
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    h = hashlib.sha256()
    for f in sorted(os.listdir(adapter)):
        with open(os.path.join(adapter, f), "rb") as fh:
            h.update(f.encode() + fh.read())
    vlm.model = merged
    vlm.model_id = f"{cfg['base_model_id']}+lora:{h.hexdigest()[:16]}"
    vlm.finetuned = {"folder": os.path.abspath(folder), "selected_step": cfg.get("selected_step"),
                     "selected_validation": cfg.get("selected_validation")}
    return vlm


def grounding_dry_run(args: FinetuneArguments, vargs: VLMGroundingArguments) -> str:
    """LoRA placement table (wrapped modules and trainable parameters per part) without data or training."""
    check_grounding_args(args, vargs)
    vlm = build_base_vlm(args.model, args.checkpoint, model_kwargs_of(args), dtype=vargs.vlm_dtype or None)
    peft_model, targets = apply_vlm_lora(vlm.model, args, vargs)
    parts: dict[str, int] = {}
    for n, p in peft_model.named_parameters():
        if p.requires_grad:
            key = next((m for m in ("language_model", "vision_tower", PROJECTOR_MODULE) if m in n), "other")
            parts[key] = parts.get(key, 0) + p.numel()
    total = sum(p.numel() for p in peft_model.parameters())
    lines = [f"{args.model}: LoRA r={args.lora_rank} alpha={args.lora_alpha} on {len(targets)} modules "
             f"({', '.join(lora_modules(vargs))})", f"{'part':<24} {'trainable':>12}"]
    lines += [f"{k:<24} {v:>12,}" for k, v in sorted(parts.items())]
    lines.append(f"{'total':<24} {sum(parts.values()):>12,} of {total:,} "
                 f"({100 * sum(parts.values()) / max(1, total):.3f}%)")
    return "\n".join(lines)

