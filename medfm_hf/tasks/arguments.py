"""The VLM part of the evaluator's argument check (called by :func:`medfm_hf.evaluation.plan.make_plan`).

Kept apart from the evaluator so that the plan can call it without importing the task runner; it raises
``ValueError`` with one line, which the plan turns into its ``EvaluationError``.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["check_vlm_arguments"]

_SET_BY_EVALUATOR = ("cache", "batch_size", "device", "concurrency")


def check_vlm_arguments(args) -> tuple[dict[str, Any], str | None, str | None]:
    """Validate model, options and checkpoint of a VLM task.

    Returns ``(model_kwargs, fingerprint, checkpoint)``: ``fingerprint`` is set when the model is not a
    checkpoint on disk or the Hub (an API model: its name and endpoint; a tiny random model: its seed),
    else ``None`` and ``checkpoint`` is what to fingerprint.
    """
    from medfm_hf.vlm import list_vlms, vlm_spec

    if args.model not in list_vlms():
        raise ValueError(f"unknown vision-language model {args.model!r} for --task {args.task}; available: "
                         f"{', '.join(list_vlms())}")
    if (getattr(args, "attacks", "") or "").strip():
        raise ValueError(f"--attacks apply to segmentation only; drop them for --task {args.task}")
    mnt = getattr(args, "max_new_tokens", None)
    if mnt is not None and (not isinstance(mnt, int) or mnt < 1):
        raise ValueError("--max_new_tokens must be >= 1")
    text = args.model_kwargs
    try:
        kwargs = dict(text) if isinstance(text, dict) else json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model_kwargs is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model_kwargs must be a JSON object like '{{\"size\": \"tiny\"}}', got {text!r}")
    bad = sorted(k for k in kwargs if k in _SET_BY_EVALUATOR)
    if bad:
        raise ValueError(f"--model_kwargs: {', '.join(bad)} are set by the evaluator (--batch_size, --vlm_cache, "
                         "the Accelerate device); remove them")
    if any("key" in k.lower() and k != "api_key_env" for k in kwargs):
        raise ValueError("--model_kwargs must not hold an API key; export it (OPENAI_API_KEY, GEMINI_API_KEY) or "
                         "name the variable with api_key_env")
    spec = vlm_spec(args.model)
    if spec.kind == "api":
        ident = f"{args.model}:{args.checkpoint or spec.default_checkpoint}@{kwargs.get('base_url', 'default')}"
        return kwargs, "api:" + ident, None
    if args.checkpoint is None and kwargs.get("size") == "tiny":
        return kwargs, f"tiny-random:seed={kwargs.get('seed', 0)}", None
    ckpt = args.checkpoint or spec.default_checkpoint
    if ckpt is not None and ckpt.startswith((".", "/")) and not os.path.exists(ckpt):
        raise ValueError(f"checkpoint {ckpt!r} does not exist; pass a local folder or a Hub model id")
    return kwargs, None, ckpt
