"""Compatibility names: the benchmark reader lives beside the builder (:mod:`medfm_hf.benchmark.reader`)."""

from __future__ import annotations

from medfm_hf.benchmark.reader import BenchmarkReader, Row, resolve_dataset
from medfm_hf.evaluation.plan import EvaluationError

Benchmark = BenchmarkReader

__all__ = ["Benchmark", "BenchmarkReader", "EvaluationError", "Row", "resolve_dataset"]
