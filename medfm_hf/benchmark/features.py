"""Typed features of the benchmark's configs (config names and levels live in :mod:`.layout`)."""

from __future__ import annotations

from medfm_hf.benchmark.layout import config_name, parse_config_name, parse_levels
from medfm_hf.records import clean_features

__all__ = ["PERTURBED_COLUMNS", "config_name", "parse_config_name", "parse_levels", "perturbed_features"]

#: The columns a perturbed row adds to the clean row, with their ``datasets.Value`` dtypes. The builder
#: fills exactly these from the calibration result (``benchmark/build.py::perturbed_row``).
PERTURBED_COLUMNS: dict[str, str] = {
    "perturbation": "string",
    "level": "int8",
    "strength": "float64",
    "ssim": "float64",
    "in_band": "bool",
    "seed": "int64",
    "evaluations": "int32",
}


def perturbed_features():
    """Clean features plus the calibration fields of a perturbed row."""
    from datasets import Value

    feats = clean_features()
    for name, dtype in PERTURBED_COLUMNS.items():
        feats[name] = Value(dtype)
    return feats
