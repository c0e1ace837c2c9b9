"""The perturbation registry.

A perturbation is a deterministic function of ``(image, strength, rng)``:

* ``strength == 0`` returns the input unchanged (same values, dtype and shape);
* the effect grows monotonically with ``strength`` for a fixed ``rng`` seed;
* **every random draw is made the same way whatever the strength** (draw first, scale after), so that
  the calibrator -- which calls the function with a fresh ``np.random.default_rng(seed)`` for every
  strength it tries -- sees the same artifact geometry growing across the five levels;
* it accepts grey ``(H, W)`` and RGB ``(H, W, 3)``, ``uint8`` and ``uint16``, and returns the input's
  dtype and shape; it never mutates its input.

Non-geometric perturbations are registered as ``fn(image, strength, rng) -> image``. Perturbations that
move content (``geometric=True``) are registered as ``fn(image, strength, rng, mask=None) -> (image,
mask)``: the mask (``bool`` ``(H, W)`` or ``None``) is moved with the same transform, nearest neighbour;
boxes are recomputed from the moved mask by the caller.

Adding a perturbation is one decorated function in its family's module::

    @register_perturbation("gaussian_noise", modalities=ALL, strength_range=(0.0, 0.5),
                           description="additive Gaussian noise, sigma as a fraction of the range")
    def gaussian_noise(image, strength, rng): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medfm_hf import MODALITIES

ALL: tuple[str, ...] = MODALITIES
COLOUR_ONLY_NOTE = "colour images only"


class PerturbationError(ValueError):
    """Bad input to a perturbation: the message says what was wrong and what to do."""


@dataclass(frozen=True)
class Perturbation:
    name: str
    fn: Callable
    modalities: tuple[str, ...]
    strength_range: tuple[float, float]
    description: str
    geometric: bool = False
    family: str = "base"
    colour_only: bool = False
    grey_only: bool = False

    def applies_to(self, modality: str, image: np.ndarray | None = None) -> bool:
        """Whether this perturbation is used for ``modality`` (and, if given, this image's channels)."""
        if modality not in self.modalities:
            return False
        if image is not None:
            if self.colour_only and image.ndim != 3:
                return False
            if self.grey_only and image.ndim != 2:
                return False
        return True

    def apply(
        self, image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Perturb ``image`` (and move ``mask`` for geometric perturbations); validates inputs."""
        image = check_image(image, self.name)
        strength = float(strength)
        if not np.isfinite(strength) or strength < 0:
            raise PerturbationError(f"{self.name}: strength must be a finite number >= 0, got {strength}")
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != image.shape[:2]:
                raise PerturbationError(
                    f"{self.name}: mask shape {mask.shape} differs from image shape {image.shape[:2]}"
                )
        if strength == 0:
            return image.copy(), None if mask is None else mask.copy()
        if self.geometric:
            out, moved = self.fn(image, strength, rng, mask=mask)
        else:
            out, moved = self.fn(image, strength, rng), (None if mask is None else mask.copy())
        return out, moved

    def __call__(self, image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, strength, rng)[0]


_REGISTRY: dict[str, Perturbation] = {}


def register_perturbation(
    name: str,
    *,
    modalities: tuple[str, ...] = ALL,
    strength_range: tuple[float, float],
    description: str,
    geometric: bool = False,
    colour_only: bool = False,
    grey_only: bool = False,
) -> Callable[[Callable], Callable]:
    """Decorator that registers a perturbation function (see the module docstring for the contract)."""

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"perturbation {name!r} registered twice")
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            raise ValueError(f"perturbation {name!r}: unknown modalities {bad}")
        family = fn.__module__.rsplit(".", 1)[-1]
        _REGISTRY[name] = Perturbation(
            name=name,
            fn=fn,
            modalities=tuple(modalities),
            strength_range=(float(strength_range[0]), float(strength_range[1])),
            description=description,
            geometric=geometric,
            family=family,
            colour_only=colour_only,
            grey_only=grey_only,
        )
        return fn

    return deco


def _ensure_loaded() -> None:
    import medfm_hf.perturbations  # noqa: F401  (imports every family module)


def list_perturbations(modality: str | None = None) -> list[str]:
    """Names of the registered perturbations; with ``modality``, those that apply to it."""
    _ensure_loaded()
    if modality is not None and modality not in MODALITIES:
        raise PerturbationError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return sorted(n for n, p in _REGISTRY.items() if modality is None or modality in p.modalities)


def get_perturbation(name: str) -> Perturbation:
    """The registered perturbation called ``name`` (a clear error listing valid names otherwise)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise PerturbationError(
            f"unknown perturbation {name!r}; run `medfm-robust perturbations` to list them "
            f"(available: {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[name]


def check_image(image: np.ndarray, name: str = "perturbation") -> np.ndarray:
    """Validate an input image; raise :class:`PerturbationError` saying what is wrong."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
            raise PerturbationError(f"{name}: image contains NaN or infinite values")
        raise PerturbationError(
            f"{name}: image dtype must be uint8 or uint16, got {image.dtype}; convert first "
            "(e.g. window 16-bit CT to uint8 or keep it uint16)"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        raise PerturbationError(f"{name}: 4-channel (RGBA) image; drop the alpha channel first (image[..., :3])")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise PerturbationError(f"{name}: image must be (H, W) or (H, W, 3), got shape {image.shape}")
    if min(image.shape[:2]) < 8:
        raise PerturbationError(f"{name}: image is too small ({image.shape[:2]}); at least 8x8 pixels needed")
    return image


def dtype_max(dtype: np.dtype) -> float:
    """The value range used for a dtype (255 for uint8, 65535 for uint16)."""
    return float(np.iinfo(dtype).max)


def to_float(image: np.ndarray) -> np.ndarray:
    """Image as float64 in [0, 1] of its dtype's range (no per-image min-max)."""
    return image.astype(np.float64) / dtype_max(image.dtype)


def from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_float`: clip to [0, 1], scale to the dtype's range, round."""
    m = dtype_max(dtype)
    return np.clip(np.rint(np.clip(x, 0.0, 1.0) * m), 0, m).astype(dtype)
