"""The ``grounding`` task: the prompt states the family's box convention, the answer is parsed in it.

The box is read with the family's :class:`~medfm_hf.vlm.base.BoxConvention` (so ``parse_box`` in that
convention: JSON ``box_2d``, ``<box>``/``<|box_start|>`` tags, PaliGemma ``<locNNNN>`` tokens, lists,
named corners), **once**: a box is never also tried at another scale to keep the better IoU. Scores per
sample: IoU with the target box (0 when unparsable), hits at IoU 0.3 / 0.5 / 0.75, and centre accuracy
(the predicted box's centre lies inside the target box). Perturbed rows are scored against the target box
moved with the image by geometric perturbations (the benchmark stores it so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from medfm_hf.metrics.boxes import box_iou, parse_box
from medfm_hf.tasks.base import TaskSpec, row_meta

__all__ = ["GROUNDING", "THRESHOLDS", "centre_inside"]

THRESHOLDS = (0.3, 0.5, 0.75)


def _phrase(row: Mapping[str, Any]) -> str:
    meta = row_meta(row)
    if meta.get("grounding_phrase"):
        return f"Locate {meta['grounding_phrase']} in this image."
    return str(row["question"]).strip()


def _fields(row: Mapping[str, Any], model: Any) -> dict[str, Any]:
    conv = getattr(model, "box_convention", None)
    instr = conv.instruction if conv is not None else "Answer with the bounding box as [x0, y0, x1, y1] in pixels."
    return {"phrase": _phrase(row), "box_instruction": instr}


def _selects(row: Mapping[str, Any]) -> bool:
    return bool(row_meta(row).get("grounding_phrase")) or row.get("task") == "grounding" and bool(row.get("question"))


def _reference(row: Mapping[str, Any]) -> str:
    return json.dumps([round(float(v), 3) for v in row["target_bbox"]])


def centre_inside(box: list[float], target: list[float]) -> bool:
    """Whether ``box``'s centre lies inside ``target`` (both pixel ``[x0, y0, x1, y1]``)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return target[0] <= cx <= target[2] and target[1] <= cy <= target[3]


def _score(text: str | None, row: Mapping[str, Any], model: Any, image_size: tuple[int, int]) -> dict[str, Any]:
    target = [float(v) for v in row["target_bbox"]]
    miss = {"parsed": None, "iou": 0.0, **{f"hit@{t:g}": 0.0 for t in THRESHOLDS}, "centre_hit": 0.0,
            "box_format": None}
    if text is None:
        return {**miss, "parse_rule": "failed"}
    conv = getattr(model, "box_convention", None)
    parsed = conv.parse(text, image_size) if conv is not None else parse_box(text, image_size, "xyxy_pixel")
    if parsed is None:
        return {**miss, "parse_rule": "no_box"}
    iou = box_iou(parsed.box, target)
    return {"parsed": json.dumps([round(v, 3) for v in parsed.box]), "parse_rule": parsed.source, "iou": iou,
            **{f"hit@{t:g}": float(iou >= t) for t in THRESHOLDS},
            "centre_hit": float(centre_inside(parsed.box, target)), "box_format": parsed.box_format}


GROUNDING = TaskSpec(
    name="grounding",
    description="locate a phrase: one box in the family's convention; Acc@0.3/0.5/0.75, mean IoU, centre accuracy",
    fields=("target_bbox",),
    templates={"default": "{phrase}\n{box_instruction}"},
    max_new_tokens=48,
    prompt_fields=_fields,
    reference=_reference,
    score=_score,
    metrics={"acc@0.5": "hit@0.5", "acc@0.3": "hit@0.3", "acc@0.75": "hit@0.75", "mean_iou": "iou",
             "centre_acc": "centre_hit"},
    headline="acc@0.5",
    selects=_selects,
)
