"""The benchmark as a Hugging Face dataset: layout, build, read, card, load, push."""

from __future__ import annotations

from medfm_hf.benchmark.build import BuildSettings, build_benchmark
from medfm_hf.benchmark.layout import BenchmarkError, verify_folder
from medfm_hf.benchmark.load import list_configs, load_config
from medfm_hf.benchmark.reader import BenchmarkReader, open_benchmark

__all__ = ["BenchmarkError", "BenchmarkReader", "BuildSettings", "build_benchmark", "list_configs", "load_config",
           "open_benchmark", "verify_folder"]
