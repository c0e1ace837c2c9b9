"""Declarative VLM tasks (``vqa``, ``caption``, ``grounding``) and their one evaluator.

>>> from medfm_hf.tasks import get_task
>>> get_task("vqa").headline
'accuracy'

Run one with ``accelerate launch evaluate.py --task vqa --model medgemma ...`` (see ``docs/vlm_evaluation.md``).
"""

from medfm_hf.tasks.base import TaskSpec


def list_tasks() -> list[str]:
    """The VLM task names."""
    return ["vqa", "caption", "grounding"]


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name`` (``ValueError`` naming the tasks otherwise)."""
    if name == "vqa":
        from medfm_hf.tasks.vqa import VQA

        return VQA
    if name == "caption":
        from medfm_hf.tasks.caption import CAPTION

        return CAPTION
    if name == "grounding":
        from medfm_hf.tasks.grounding import GROUNDING

        return GROUNDING
    raise ValueError(f"unknown VLM task {name!r}; available: {', '.join(list_tasks())}")


__all__ = ["TaskSpec", "get_task", "list_tasks"]
