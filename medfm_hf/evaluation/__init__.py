"""The Accelerate-driven segmentation robustness evaluator (``evaluate.py`` / ``medfm-robust evaluate``)."""

from __future__ import annotations

from medfm_hf.evaluation.args import EvalArguments

__all__ = ["EvalArguments"]
