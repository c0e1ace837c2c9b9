"""Typed features of the benchmark's configs."""

from __future__ import annotations

from medfm_hf.records import clean_features

PERTURBED_FIELDS = ("perturbation", "level", "strength", "ssim", "in_band", "seed", "evaluations")


def perturbed_features():
    """Clean features plus the calibration fields of a perturbed row."""
    from datasets import Value

    feats = clean_features()
    feats["perturbation"] = Value("string")
    feats["level"] = Value("int8")
    feats["strength"] = Value("float64")
    feats["ssim"] = Value("float64")
    feats["in_band"] = Value("bool")
    feats["seed"] = Value("int64")
    feats["evaluations"] = Value("int32")
    return feats


def config_name(perturbation: str, level: int) -> str:
    return f"{perturbation}_l{level}"


def parse_config_name(config: str) -> tuple[str, int] | None:
    """``"ct_metal_l3"`` -> ``("ct_metal", 3)``; ``None`` for ``clean`` or anything else.

    Only the final ``_l<digit>`` is split off, so names that contain ``_s`` or ``_l`` survive intact.
    """
    head, sep, tail = config.rpartition("_l")
    if sep and tail.isdigit() and head:
        return head, int(tail)
    return None
