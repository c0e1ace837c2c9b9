"""Typed features of the benchmark's configs."""

from __future__ import annotations

from medfm_hf.records import clean_features

PERTURBED_FIELDS = ("perturbation", "level", "strength", "ssim", "in_band", "seed", "evaluations", "ssim_frame",
                    "reason", "target_visible_fraction")


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
    feats["ssim_frame"] = Value("float64")
    feats["reason"] = Value("string")
    feats["target_visible_fraction"] = Value("float64")
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


def parse_levels(text: str) -> list[int]:
    """``"1-5"``, ``"1,3,5"`` or ``"2"`` -> sorted list of levels in 1-5."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    bad = sorted(v for v in out if v not in (1, 2, 3, 4, 5))
    if bad or not out:
        raise ValueError(f"levels must be within 1-5 (e.g. 1-5 or 1,3,5), got {text!r}")
    return sorted(out)
