"""The ``caption`` task: one-sentence captions scored with BLEU-1..4 and CIDEr-D.

Tokenisation is the pure-Python COCO approximation (``tokenizer="python"``), the same on every machine
(the PTB jar needs Java). CIDEr-D's IDF comes from the **clean references of the images in the run**,
fixed once, so a perturbed condition is scored against the same IDF as the clean one (COCO would take it
from whichever subset is scored, which makes two conditions incomparable). Per-caption BLEU is the
sentence-level BLEU of ``pycocoevalcap``; the summaries also report corpus BLEU per condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from medfm_hf.tasks.base import TaskSpec

__all__ = ["CAPTION", "TOKENIZER", "caption_scores"]

TOKENIZER = "python"
_BLEU = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")


def _fields(row: Mapping[str, Any], model: Any) -> dict[str, Any]:
    return {}


def _references(row: Mapping[str, Any]) -> list[str]:
    cap = row["caption"]
    return [str(c) for c in cap] if isinstance(cap, (list, tuple)) else [str(cap)]


def _reference(row: Mapping[str, Any]) -> str:
    return " || ".join(_references(row))


def _score(text: str | None, row: Mapping[str, Any], model: Any, image_size: tuple[int, int]) -> dict[str, Any]:
    if text is None:
        return {"parsed": None, "parse_rule": "failed"}
    cap = " ".join(str(text).split())
    return {"parsed": cap or None, "parse_rule": "text" if cap else "empty"}


def caption_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Per-caption BLEU-1..4 and CIDEr-D for every row of a merged caption table.

    ``reference`` holds the references joined by ``" || "``; the IDF comes from the references of the
    clean rows (one set per image). A row with no caption (failed or empty) scores 0 on every metric.
    """
    from medfm_hf.metrics.captioning import bleu_from_tokens, cider_d_from_tokens, tokenize_captions

    df = df.copy()
    refs = [str(r).split(" || ") for r in df["reference"]]
    hyps = [p if isinstance(p, str) and p else "" for p in df["parsed"]]
    clean = df[df["kind"] == "clean"].drop_duplicates("image_id")
    idf_refs = [str(r).split(" || ") for r in clean["reference"]] or refs
    flat = hyps + [r for rs in refs for r in rs] + [r for rs in idf_refs for r in rs]
    toks, _ = tokenize_captions(flat, TOKENIZER)
    pos = len(hyps)
    hyp_t = toks[:pos]
    ref_t, idf_t = [], []
    for rs in refs:
        ref_t.append(toks[pos : pos + len(rs)])
        pos += len(rs)
    for rs in idf_refs:
        idf_t.append(toks[pos : pos + len(rs)])
        pos += len(rs)
    bleu = bleu_from_tokens(hyp_t, ref_t)
    cider = cider_d_from_tokens(hyp_t, ref_t, idf_references=idf_t)
    ok = np.array([bool(h) for h in hyps])
    for k, name in enumerate(_BLEU, start=1):
        df[name] = np.where(ok, bleu[f"per_sample_bleu_{k}"], 0.0)
    df["cider"] = np.where(ok, cider["per_sample_cider"], 0.0)
    return df


def corpus_bleu(group: pd.DataFrame) -> dict[str, float]:
    """Corpus BLEU-1..4 of one condition (failed rows as empty captions)."""
    from medfm_hf.metrics.captioning import bleu_from_tokens, tokenize_captions

    hyps = [p if isinstance(p, str) and p else "" for p in group["parsed"]]
    refs = [str(r).split(" || ") for r in group["reference"]]
    toks, _ = tokenize_captions(hyps + [r for rs in refs for r in rs], TOKENIZER)
    pos, ref_t = len(hyps), []
    for rs in refs:
        ref_t.append(toks[pos : pos + len(rs)])
        pos += len(rs)
    out = bleu_from_tokens(toks[: len(hyps)], ref_t)
    return {f"corpus_{n}": float(out[n]) for n in _BLEU}


CAPTION = TaskSpec(
    name="caption",
    description="one-sentence captions, BLEU-1..4 and CIDEr-D (IDF fixed from the clean references)",
    fields=("caption",),
    templates={
        "default": "Write a one-sentence caption for this medical image: the imaging modality and the main finding "
                   "with its location.",
    },
    max_new_tokens=64,
    prompt_fields=_fields,
    reference=_reference,
    score=_score,
    metrics={"cider": "cider", "bleu_1": "bleu_1", "bleu_4": "bleu_4"},
    headline="cider",
    finalize=caption_scores,
    group_metrics=corpus_bleu,
)
