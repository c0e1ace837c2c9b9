"""The benchmark as a Hugging Face dataset: build, card, load, push."""

from __future__ import annotations

from medfm_hf.benchmark.build import BuildSettings, build_benchmark
from medfm_hf.benchmark.load import list_configs, load_config

__all__ = ["BuildSettings", "build_benchmark", "list_configs", "load_config"]
