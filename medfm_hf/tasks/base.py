"""A VLM task as data: which rows, the prompt per model family, generation length, parser, metrics, headline.

A :class:`TaskSpec` is everything the one evaluator (:mod:`medfm_hf.tasks.evaluation`) needs to know about
a task; the evaluator itself knows no task in particular. The three specs live in
:mod:`medfm_hf.tasks.vqa`, :mod:`medfm_hf.tasks.caption` and :mod:`medfm_hf.tasks.grounding`.

Rules shared by every task (stated here because they change headline numbers):

* an answer the parser cannot read is **wrong and counted** (``parsed`` is ``None``, it stays in every
  denominator and in ``unparsable_rate``); it is never re-asked and never judged by another model;
* a failed call (API error, safety block, empty answer) is wrong too and counted in ``failure_rate``;
* the prompt is the same for clean and perturbed images of one family, so a drop measures the image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TaskSpec", "row_meta", "template_for", "to_rgb_uint8"]


def row_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's ``meta`` as a dict (stored as a JSON string in the benchmark)."""
    meta = row.get("meta")
    if isinstance(meta, dict):
        return meta
    if isinstance(meta, str) and meta:
        try:
            out = json.loads(meta)
        except json.JSONDecodeError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One VLM task.

    Attributes
    ----------
    name
        ``vqa``, ``caption`` or ``grounding`` (the ``--task`` value).
    description
        One line for ``--help`` and the docs.
    fields
        Row fields a sample needs (a row missing one is not part of the task).
    templates
        Prompt template per model family (``"default"`` for the others); formatted with the fields of
        :meth:`prompt_fields` (``{question}``, ``{options}``, ``{phrase}``, ``{box_instruction}``).
    max_new_tokens
        Generation cap of the task (``--max_new_tokens`` overrides it; a capped answer is ``truncated``).
    selects
        ``selects(row) -> bool``: whether a benchmark row belongs to the task (beyond ``fields``).
    prompt_fields
        ``prompt_fields(row, model) -> dict`` of the template's fields.
    reference
        ``reference(row) -> str``: the reference as stored in the per-sample table.
    score
        ``score(text, row, model, image_size) -> dict``: the per-sample columns read from one answer
        (``parsed``, ``parse_rule``, the task's metrics); ``None`` text is a failed call.
    metrics
        Summary name -> per-sample column; the summary reports the column's mean per perturbation x level
        (``{"accuracy": "correct"}``).
    headline
        The metric the summaries lead with and pair clean vs perturbed.
    finalize
        ``finalize(df) -> df``: per-sample columns that need the whole run (captioning: CIDEr-D with the
        IDF of the clean references), applied to the merged table; ``None`` when not needed.
    group_metrics
        ``group_metrics(df_group) -> dict``: extra per perturbation x level numbers that are not means of
        a per-sample column (corpus BLEU, ECE).
    """

    name: str
    description: str
    fields: tuple[str, ...]
    templates: Mapping[str, str]
    max_new_tokens: int
    prompt_fields: Callable[[Mapping[str, Any], Any], dict[str, Any]]
    reference: Callable[[Mapping[str, Any]], str]
    score: Callable[[str | None, Mapping[str, Any], Any, tuple[int, int]], dict[str, Any]]
    metrics: Mapping[str, str]
    headline: str
    selects: Callable[[Mapping[str, Any]], bool] = field(default=lambda row: True)
    finalize: Callable[[Any], Any] | None = None
    group_metrics: Callable[[Any], dict[str, float]] | None = None

    def wants(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` has every field of the task and is selected by it."""
        for f in self.fields:
            v = row.get(f)
            if v is None or (isinstance(v, (str, list, tuple)) and len(v) == 0):
                return False
        return bool(self.selects(row))

    def prompt(self, row: Mapping[str, Any], model: Any) -> str:
        """The prompt for ``row`` in ``model``'s family template."""
        return template_for(self, model).format(**self.prompt_fields(row, model))


def template_for(spec: TaskSpec, model: Any) -> str:
    """The family's template (``model.name``, then ``model.family``), else the default."""
    for key in (getattr(model, "name", None), getattr(model, "family", None)):
        if key and key in spec.templates:
            return spec.templates[key]
    return spec.templates["default"]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A stored benchmark image as the ``uint8`` array a VLM is shown (``uint16`` scaled linearly)."""
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img.astype(np.float64) / 257.0).round().astype(np.uint8)
    return img
