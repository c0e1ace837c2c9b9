"""Loading a fine-tuned output folder back as a plain segmenter (what ``evaluate.py --finetuned DIR`` does)."""

from __future__ import annotations

import json
import logging
import os

import torch

from medfm_hf.finetune.strategies import StrategyOptions, base_fingerprint, insert_adapters

logger = logging.getLogger(__name__)


class FinetunedLoadError(ValueError):
    """A fine-tuned folder cannot be loaded: the message says what was wrong and what to do."""


def read_finetuned_config(folder: str) -> dict:
    """The ``finetune_config.json`` of an output folder of ``finetune.py``."""
    from medfm_hf.finetune.loop import CONFIG_NAME

    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FinetunedLoadError(
            f"{folder!r} has no {CONFIG_NAME}; pass the --output folder of a finished `finetune.py` run "
            "(an unfinished run resumes when you rerun the same command)"
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_finetuned(folder: str, device: str | torch.device | None = None, checkpoint: str | None = None,
                   check_fingerprint: bool = True):
    """Rebuild the fine-tuned segmenter of ``folder`` (eval mode, every parameter frozen).

    The base model is rebuilt from the config's ``model``, ``checkpoint`` (or the ``checkpoint`` argument,
    when the base weights moved) and ``model_kwargs``; its weights must have the recorded fingerprint.
    Then the strategy's structure is restored (adapters inserted; LoRA loaded from the PEFT folder and
    merged into the weights) and the trained tensors are loaded -- every one of them must find its parameter.
    """
    from medfm_hf.finetune.trainer import ADAPTER_DIR, WEIGHTS_NAME
    from medfm_hf.models import create_segmenter

    cfg = read_finetuned_config(folder)
    base_ckpt = checkpoint if checkpoint is not None else cfg.get("checkpoint")
    model = create_segmenter(cfg["model"], checkpoint=base_ckpt, **cfg.get("model_kwargs", {}))
    if check_fingerprint:
        fp = base_fingerprint(model)
        if fp != cfg["base_fingerprint"]:
            raise FinetunedLoadError(
                f"the base weights of {cfg['model']} from checkpoint {base_ckpt!r} are not those {folder!r} was "
                f"fine-tuned from ({fp[:19]}... vs {cfg['base_fingerprint'][:19]}...); pass the original base "
                "weights with --checkpoint"
            )
    opts = StrategyOptions(**cfg.get("strategy_options", {}))
    if cfg["format"] == "peft_lora":
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, os.path.join(folder, ADAPTER_DIR))
        model = peft_model.merge_and_unload()
    else:
        if cfg.get("adapter_blocks"):
            insert_adapters(model, opts.adapter_width, opts.adapter_scale, opts.adapter_site, seed=0)
        from safetensors.torch import load_file

        tensors = load_file(os.path.join(folder, WEIGHTS_NAME))
        own = dict(model.named_parameters())
        unknown = [k for k in tensors if k not in own]
        if unknown:
            raise FinetunedLoadError(f"{folder!r}: {len(unknown)} saved tensors match no parameter of the rebuilt "
                                     f"model (e.g. {unknown[:3]}); was it written by another version?")
        with torch.no_grad():
            for k, t in tensors.items():
                if own[k].shape != t.shape:
                    raise FinetunedLoadError(f"{folder!r}: {k} has shape {tuple(t.shape)}, the model {tuple(own[k].shape)}")
                own[k].copy_(t)
    if device is not None:
        model = model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.name = cfg["model"]
    model.finetuned = {"folder": os.path.abspath(folder), "strategy": cfg["strategy"],
                       "selected_step": cfg.get("selected_step")}
    return model
