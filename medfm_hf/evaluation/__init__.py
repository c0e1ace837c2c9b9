"""The Accelerate-driven robustness evaluator (``evaluate.py`` / ``medfm-robust evaluate``).

``args`` (what the user passes) -> ``plan`` (validated, typed :class:`EvalPlan`) -> ``runner`` (sharded,
resumable loop over a task module such as ``segmentation``) -> ``results`` (tables, ``run.json``).
"""

from __future__ import annotations

from medfm_hf.evaluation.args import EvalArguments
from medfm_hf.evaluation.plan import EvalPlan, EvaluationError

__all__ = ["EvalArguments", "EvalPlan", "EvaluationError"]
