"""Declarative VLM tasks (``vqa``, ``caption``, ``grounding``) and their one evaluator.

>>> from medfm_hf.tasks import get_task
>>> get_task("vqa").headline
'accuracy'

Run one with ``accelerate launch evaluate.py --task vqa --model medgemma ...`` (see ``docs/vlm_evaluation.md``).
"""

from medfm_hf.tasks.base import TaskSpec, get_task, list_tasks

__all__ = ["TaskSpec", "get_task", "list_tasks"]
