"""The resumable Accelerate training loop shared by the segmenter strategies and VLM grounding LoRA.

What a task brings (:mod:`medfm_hf.finetune.trainer`, :mod:`medfm_hf.finetune.vlm_grounding`): the model with
its trainable parameter names, a :class:`StepRunner` that does the forward/backward of one optimizer step
over this rank's accumulation micro-batches, a validation function and a selection rule. What the loop owns:

* the optimizer (AdamW/Adam on the trainable tensors only) and the warm-up + constant/linear/cosine schedule;
* **resume**: trainable weights, optimizer, scheduler, torch RNG, log and best-so-far in
  ``<output>/.medfm/last.pt``, written atomically every ``save_steps``; a rerun with the same settings
  continues from there and reproduces the uninterrupted run (samples are functions of ``(seed, epoch, index)``,
  :func:`~medfm_hf.finetune.data.rank_batches`); a rerun with other settings is refused;
* **selection**: validation at step 0 (the base model) and every ``eval_steps``; the best step's trainable
  weights are kept in ``.medfm/best.safetensors`` and loaded back at the end;
* the per-rank record of which images each step trained on (``.medfm/seen_rank<r>.jsonl``), the time budget
  (``--max_train_seconds``, decided on rank 0 and broadcast), the progress bar (local main process only).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from medfm_hf.dataset_io import atomic_write_text
from medfm_hf.io import atomic_path

logger = logging.getLogger(__name__)

STATE_DIR = ".medfm"
CONFIG_NAME = "finetune_config.json"
LOG_NAME = "training_log.json"
SETTINGS_NAME = "finetune_settings.json"


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    t = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - t)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def atomic_torch_save(obj, path: str) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def finished_run(out: str, settings: dict, error: Callable[[str], Exception]) -> dict | None:
    """The output config of a finished run in ``out`` with these settings; ``None`` if there is none yet.

    Raises ``error(message)`` when ``out`` holds a run with other settings.
    """
    settings_path = os.path.join(out, STATE_DIR, SETTINGS_NAME)
    if not os.path.exists(settings_path):
        return None
    with open(settings_path, encoding="utf-8") as fh:
        old = json.load(fh)
    if old != json.loads(json.dumps(settings)):
        diff = sorted(k for k in settings if old.get(k) != settings[k])
        raise error(f"{out} holds a run with other settings (differs in {', '.join(diff)}); choose another --output")
    config_path = os.path.join(out, CONFIG_NAME)
    if os.path.exists(config_path):
        logger.info("%s is finished already; delete it to train again", out)
        with open(config_path, encoding="utf-8") as fh:
            return json.load(fh)
    return None


def perturbation_augment(args, error: Callable[[str], Exception]):
    """The ``--perturbation_augment`` of ``args`` (a :class:`~medfm_hf.finetune.data.PerturbationAugment`) or ``None``."""
    if not args.perturbation_augment.strip():
        return None
    from medfm_hf.benchmark.layout import parse_levels
    from medfm_hf.finetune.data import PerturbationAugment

    names = [n.strip() for n in args.perturbation_augment.split(",") if n.strip()]
    try:
        return PerturbationAugment(names, parse_levels(args.perturbation_levels), args.perturbation_prob, args.seed)
    except (KeyError, ValueError) as exc:
        raise error(f"--perturbation_augment: {exc}") from exc


def schedule(args, n_train: int, world: int, error: Callable[[str], Exception], what: str) -> tuple[int, int, int]:
    """``(global_batch, steps_per_epoch, total_steps)`` for ``n_train`` training ``what`` on ``world`` processes."""
    acc = args.gradient_accumulation_steps
    global_batch = args.batch_size * world * acc
    steps_per_epoch = n_train // global_batch
    if steps_per_epoch == 0:
        raise error(f"clean/train has {n_train} {what}, fewer than one global batch of {global_batch} "
                    f"(batch_size {args.batch_size} x {world} processes x {acc} accumulation); lower them")
    total = args.max_steps if args.max_steps > 0 else args.epochs * steps_per_epoch
    return global_batch, steps_per_epoch, total


class StepRunner(Protocol):
    """One task's forward/backward: :meth:`start_epoch` once per (resumed) epoch, :meth:`step` per optimizer step."""

    def start_epoch(self, epoch: int, micro: list[list[tuple[int, int]]], first: int) -> None:
        """``micro``: this rank's micro-batches of the epoch; ``first``: the first optimizer step to run."""

    def step(self, model: Any, j: int, params: list[torch.Tensor]) -> tuple[float, list[str], dict]:
        """Backward over the accumulation micro-batches of step ``j`` of the epoch (gradients synchronised on
        the last); returns the global mean loss, the image ids this rank trained on and extra log fields."""


@dataclass
class LoopResult:
    """Where the loop ended: the unwrapped model holds the selected (best) trainable weights on the main process."""

    step: int
    log: dict
    best: dict
    resumed: bool
    unwrapped: Any
    n_trainable: int


def run_loop(
    *,
    args,
    accelerator,
    model: torch.nn.Module,
    names: list[str],
    out: str,
    settings: dict,
    n_train: int,
    steps_per_epoch: int,
    total: int,
    runner: StepRunner,
    validate: Callable[[Any], dict],
    better: Callable[[dict, dict], bool],
    best: dict,
    desc: str,
    postfix: tuple[str, str],
    error: Callable[[str], Exception],
    step_callback: Callable[[int], None] | None = None,
) -> LoopResult:
    """Train ``names`` of ``model`` for ``total`` optimizer steps (see the module docstring).

    ``validate(model)`` returns the validation measures (a dict); ``better(v, best)`` says whether they beat the
    best so far; ``best`` is the initial best record (``step`` -1 plus the measures' keys). ``postfix`` is the
    progress bar's ``(label, key of best)``. ``step_callback(step)`` runs after every optimizer step (after that
    step's resume checkpoint); tests raise from it to simulate a kill.
    """
    from tqdm.auto import tqdm

    from medfm_hf.finetune.data import rank_batches

    state_dir = os.path.join(out, STATE_DIR)
    last_path = os.path.join(state_dir, "last.pt")
    best_path = os.path.join(state_dir, "best.safetensors")
    rank, world = accelerator.process_index, accelerator.num_processes
    acc = args.gradient_accumulation_steps
    own0 = dict(model.named_parameters())
    params = [own0[n] for n in names]
    n_trainable = sum(p.numel() for p in params)
    opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=args.learning_rate, weight_decay=args.weight_decay if args.optimizer == "adamw" else 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, args.warmup_steps,
                                                                                 args.lr_scheduler))
    eval_every = args.eval_steps or steps_per_epoch
    save_every = args.save_steps or eval_every

    # ---- resume -----------------------------------------------------------------------------------------
    log: dict = {"steps": [], "validation": []}
    best = dict(best)
    step = 0
    resumed = os.path.exists(last_path)
    if resumed:
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        missing = [n for n in names if n not in state["trainable"]]
        if missing:
            raise error(f"{last_path} does not match this model and strategy (missing {missing[:3]}); "
                        "choose another --output")
        with torch.no_grad():
            for n in names:
                own0[n].copy_(state["trainable"][n])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, log, best = int(state["step"]), state["log"], state["best"]
        logger.info("resuming %s from step %d of %d", out, step, total)
    if accelerator.is_main_process:
        os.makedirs(state_dir, exist_ok=True)
        atomic_write_text(os.path.join(state_dir, SETTINGS_NAME), json.dumps(settings, indent=2, sort_keys=True))
    accelerator.wait_for_everyone()

    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    own = dict(unwrapped.named_parameters())

    def trainable_state() -> dict[str, torch.Tensor]:
        return {n: own[n].detach().cpu().clone() for n in names}

    def do_validate(at: int) -> None:
        v = validate(model)
        log["validation"].append({"step": at, "epoch": at / steps_per_epoch, **v})
        logger.info("step %d: validation %s", at, ", ".join(f"{k} {x:.4g}" for k, x in v.items()))
        if better(v, best):
            best.update({"step": at, **{k: v[k] for k in best if k != "step"}})
            if accelerator.is_main_process:
                atomic_safetensors(trainable_state(), best_path)

    def save_last(at: int) -> None:
        if accelerator.is_main_process:
            atomic_torch_save({"step": at, "trainable": trainable_state(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "log": log,
                               "best": dict(best)}, last_path)
        accelerator.wait_for_everyone()

    if step == 0 and not log["validation"]:
        do_validate(0)
    seen_path = os.path.join(state_dir, f"seen_rank{rank}.jsonl")
    if resumed and os.path.exists(seen_path):  # forget what the killed run did after its last checkpoint
        with open(seen_path, encoding="utf-8") as fh:
            kept = [ln for ln in fh if ln.strip() and json.loads(ln)["step"] <= step]
        atomic_write_text(seen_path, "".join(kept))
    elif os.path.exists(seen_path):
        os.remove(seen_path)
    t0 = time.perf_counter()
    trained_before = log["steps"][-1]["seconds"] if log["steps"] else 0.0
    bar = tqdm(total=total, initial=step, desc=desc, unit="step",
               disable=args.no_progress or not accelerator.is_local_main_process)
    stop = False
    while step < total and not stop:
        epoch, j = divmod(step, steps_per_epoch)
        micro = rank_batches(n_train, seed=args.seed, epoch=epoch, per_device=args.batch_size, world=world,
                             rank=rank, accumulation=acc)
        runner.start_epoch(epoch, micro, j)
        while j < steps_per_epoch and step < total:
            mean_loss, ids, extra = runner.step(model, j, params)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            j += 1
            elapsed = trained_before + time.perf_counter() - t0
            log["steps"].append({"step": step, "epoch": epoch, "loss": mean_loss, **extra,
                                 "lr": float(scheduler.get_last_lr()[0]), "seconds": elapsed})
            with open(seen_path, "a", encoding="utf-8") as fh:  # which images this rank trained on, per step
                fh.write(json.dumps({"step": step, "image_ids": ids}) + "\n")
            bar.update()
            bar.set_postfix({"loss": f"{mean_loss:.4f}", postfix[0]: f"{best[postfix[1]]:.3f}"})
            if args.max_train_seconds > 0:
                from accelerate.utils import broadcast_object_list

                flag = [elapsed >= args.max_train_seconds]
                broadcast_object_list(flag, from_process=0)
                stop = bool(flag[0])
            if step % eval_every == 0 or step == total or stop:
                do_validate(step)
            if step % save_every == 0 or step == total or stop:
                save_last(step)
            if step_callback is not None:
                step_callback(step)
            if stop:
                logger.info("time budget of %.0f s reached at step %d", args.max_train_seconds, step)
                break
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        from safetensors.torch import load_file

        chosen = load_file(best_path)  # step 0 (the base model) when fine-tuning never beat it on validation
        with torch.no_grad():
            for n, t in chosen.items():
                own[n].copy_(t.to(own[n].device))
    return LoopResult(step=step, log=log, best=best, resumed=resumed, unwrapped=unwrapped, n_trainable=n_trainable)


def write_outputs(out: str, result: dict, log: dict) -> None:
    """The training log and the output config (written last: its presence marks the run finished)."""
    atomic_write_text(os.path.join(out, LOG_NAME), json.dumps(log, indent=1))
    atomic_write_text(os.path.join(out, CONFIG_NAME), json.dumps(result, indent=2))
