"""The ``vqa`` task: multiple choice, options shown lettered, "answer with the letter".

The answer is read by :func:`medfm_hf.metrics.vqa.parse_choice` (letter, answer phrase, labelled letter,
the text of exactly one option; hedges, negations and several options are unparsable), never by another
model. For local models the evaluator also records the probability of each option letter at the answer
position (:func:`option_letter_probs`, one forward pass) so accuracy and calibration can be reported
side by side.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medfm_hf.metrics.vqa import parse_choice
from medfm_hf.tasks.base import TaskSpec

logger = logging.getLogger(__name__)

__all__ = ["VQA", "expected_calibration_error", "format_options", "option_letter_probs"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def format_options(options: Sequence[str]) -> str:
    """``"A. CT\\nB. MRI ..."`` (one option per line)."""
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def _fields(row: Mapping[str, Any], model: Any) -> dict[str, Any]:
    opts = list(row["options"])
    return {"question": str(row["question"]).strip(), "options": format_options(opts),
            "letters": ", ".join(LETTERS[: len(opts)])}


def _reference(row: Mapping[str, Any]) -> str:
    ans = str(row["answer"]).strip()
    opts = list(row["options"])
    if len(ans) == 1 and ans.upper() in LETTERS[: len(opts)]:
        return ans.upper()
    for i, o in enumerate(opts):
        if str(o).strip().lower() == ans.lower():
            return LETTERS[i]
    raise ValueError(f"answer {ans!r} is neither an option letter nor an option text of {opts}; fix the row")


def _score(text: str | None, row: Mapping[str, Any], model: Any, image_size: tuple[int, int]) -> dict[str, Any]:
    ref = _reference(row)
    if text is None:
        return {"parsed": None, "parse_rule": "failed", "correct": 0.0}
    letter, rule = parse_choice(text, list(row["options"]))
    return {"parsed": letter, "parse_rule": rule, "correct": float(letter == ref)}


VQA = TaskSpec(
    name="vqa",
    description="multiple-choice VQA: options shown lettered, the model answers with the letter",
    fields=("question", "options", "answer"),
    templates={
        "default": "{question}\n{options}\nAnswer with the letter of the correct option ({letters}) only.",
        # LLaVA(-Med)'s instruction-tuning phrase for multiple choice
        "llava_med": "{question}\n{options}\nAnswer with the option's letter from the given choices directly.",
    },
    max_new_tokens=16,
    prompt_fields=_fields,
    reference=_reference,
    score=_score,
    metrics={"accuracy": "correct"},
    headline="accuracy",
)


# ------------------------------------------------------------------------------------------------------
# option-letter probabilities (local models)
# ------------------------------------------------------------------------------------------------------


def letter_token_ids(tokenizer: Any, n: int) -> list[int] | None:
    """The token id of each of the first ``n`` letters as the model would write them first, or ``None``
    when a letter is not one token of its own (then no probabilities are reported)."""
    ids = []
    for letter in LETTERS[:n]:
        toks = tokenizer.encode(letter, add_special_tokens=False)
        if len(toks) != 1:
            return None
        ids.append(int(toks[0]))
    return ids if len(set(ids)) == n else None


def option_letter_probs(model: Any, queries: Sequence[Any], n_options: Sequence[int], config: Any) -> list[
        list[float] | None]:
    """Probability of each option letter at the answer position, renormalised over the options.

    One forward pass over the batch (the same encoding ``generate`` uses, left padded, so the last
    position is the first answer token for every row). ``None`` for a row (or every row) when the model
    is not a local transformers model or its tokenizer splits a letter into several tokens.
    """
    import torch

    if not hasattr(model, "encode") or not hasattr(model, "model"):
        return [None] * len(queries)
    out: list[list[float] | None] = []
    inputs = model.encode(list(queries), config)
    with torch.inference_mode():
        logits = model.model(**inputs).logits[:, -1, :].float().cpu()
    for i, n in enumerate(n_options):
        ids = letter_token_ids(model.tokenizer, int(n))
        if ids is None:
            out.append(None)
            continue
        p = torch.softmax(logits[i, ids], dim=0).tolist()
        out.append([float(v) for v in p])
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width confidence bins: sum over bins of (bin share) x |accuracy - mean
    confidence|. NaN when there is no sample.

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1])
    0.4
    """
    conf = np.asarray(confidence, dtype=np.float64)
    acc = np.asarray(correct, dtype=np.float64)
    keep = np.isfinite(conf)
    conf, acc = conf[keep], acc[keep]
    if conf.size == 0:
        return float("nan")
    # bin k holds confidences in (k/n, (k+1)/n]; 0 goes to the first bin
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for k in range(n_bins):
        sel = idx == k
        if sel.any():
            total += sel.mean() * abs(acc[sel].mean() - conf[sel].mean())
    return float(total)


def prob_columns(probs: list[float] | None, row: Mapping[str, Any]) -> dict[str, Any]:
    """Per-sample columns from the option probabilities: JSON list, argmax letter, confidence, correct."""
    if probs is None or not all(math.isfinite(p) for p in probs):
        return {"option_probs": None, "prob_choice": None, "confidence": float("nan"), "prob_correct": float("nan")}
    probs = [round(float(p), 6) for p in probs]  # 6 decimals: batch composition moves only the float noise
    k = int(np.argmax(probs))
    return {"option_probs": json.dumps(probs), "prob_choice": LETTERS[k],
            "confidence": probs[k], "prob_correct": float(LETTERS[k] == _reference(row))}
