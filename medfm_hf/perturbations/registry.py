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

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medfm_hf import MODALITIES

ALL: tuple[str, ...] = MODALITIES
COLOUR_ONLY_NOTE = "colour images only"


class PerturbationError(ValueError):
    """Bad input to a perturbation: the message says what was wrong and what to do."""


#: Side effects a perturbation may have because they *are* its artifact (declared per perturbation,
#: checked by the registry-wide property test, listed in ``docs/physics_audit.md``):
#: ``saturated`` / ``zeroed`` -- more than 5 % of the FOV newly at the top / at zero (over-exposure,
#: vignette, blink, occluders, impulse noise); ``smoothing`` -- high-pass noise energy falls by more than
#: 30 % (blur, defocus, pixelation, compression, haze, contrast loss); ``affine`` -- a global ``a x + b``
#: reproduces the output (brightness, contrast).
SIDE_EFFECTS = ("saturated", "zeroed", "smoothing", "affine")

#: Opacity above which an occluder hides a target pixel (``target_visible_fraction``).
OCCLUSION_OPACITY = 0.5


@dataclass
class PerturbationOutput:
    """What one application returns: the image, the moved mask, and the occluder's opacity map.

    ``opacity`` (float ``(H, W)`` in [0, 1], or ``None`` for perturbations that hide nothing) is how
    much of the underlying signal an occluder (blood, shadow, vignette, blink, haze, hair) covers.
    """

    image: np.ndarray
    mask: np.ndarray | None
    opacity: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def stored_range(image: np.ndarray, data_range: float | None = None) -> float:
    """The value range an integer image is perturbed in.

    ``data_range`` when given (the record's ``meta["data_range"]``); 255 for ``uint8``; for ``uint16``
    the smallest of 10/12/14/16-bit full scale (1023, 4095, 16383, 65535) that holds the image's maximum,
    so 12-bit CT/X-ray stored in ``uint16`` is perturbed in 0-4095, not 0-65535.
    """
    if data_range is not None:
        return float(data_range)
    if image.dtype == np.uint8:
        return 255.0
    top = int(image.max()) if image.size else 0
    for bits in (10, 12, 14, 16):
        if top <= (1 << bits) - 1:
            return float((1 << bits) - 1)
    return 65535.0


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
    ceiling: float | None = None
    ceiling_note: str = ""
    side_effects: frozenset = frozenset()
    side_effect_note: str = ""
    pending: frozenset = frozenset()
    pending_note: str = ""
    occluding: bool = False
    accepts: frozenset = frozenset()

    @property
    def max_strength(self) -> float:
        """The strongest strength the calibrator may use: the declared physical ceiling."""
        top = self.strength_range[1]
        return top if self.ceiling is None else min(top, float(self.ceiling))

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
        self, image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None,
        *, data_range: float | None = None, fov: np.ndarray | None = None, window: tuple | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Perturb ``image`` (and move ``mask`` for geometric perturbations); validates inputs.

        See :meth:`apply_full` for ``data_range``, ``fov`` and ``window``.
        """
        out = self.apply_full(image, strength, rng, mask, data_range=data_range, fov=fov, window=window)
        return out.image, out.mask

    def apply_full(
        self, image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None,
        *, data_range: float | None = None, fov: np.ndarray | None = None, window: tuple | None = None,
    ) -> PerturbationOutput:
        """Perturb ``image``; also return the occluder's opacity map (see :class:`PerturbationOutput`).

        Parameters
        ----------
        data_range : float, optional
            The image's stored range (:func:`stored_range`); a ``uint16`` image with a narrower range
            (12-bit: 4095) is scaled to the full 16-bit range, perturbed there and scaled back.
        fov : numpy.ndarray, optional
            The record's field of view; modality-specific perturbations that need it (ultrasound scan
            lines, pathology glass) detect it when it is not given.
        window : tuple, optional
            ``(centre, width)`` display window in the source's units (CT: HU) for perturbations that
            work in physical units; a documented default is used otherwise.
        """
        image = check_image(image, self.name)
        strength = float(strength)
        if not np.isfinite(strength) or strength < 0:
            raise PerturbationError(f"{self.name}: strength must be a finite number >= 0, got {strength}")
        top_strength = self.strength_range[1]
        if strength > top_strength * (1 + 1e-9):
            raise PerturbationError(
                f"{self.name}: strength {strength:g} is above its range {self.strength_range[0]:g}-{top_strength:g} "
                f"(physical ceiling {self.max_strength:g}); use calibrate() or a level, or a strength in range"
            )
        if not isinstance(rng, np.random.Generator):
            raise PerturbationError(
                f"{self.name}: rng must be a seeded numpy Generator, e.g. np.random.default_rng(0), "
                f"got {type(rng).__name__}"
            )
        if mask is not None:
            mask = np.asarray(mask).astype(bool)
            if mask.shape != image.shape[:2]:
                raise PerturbationError(
                    f"{self.name}: mask shape {mask.shape} differs from image shape {image.shape[:2]}"
                )
        if strength == 0:
            return PerturbationOutput(image.copy(), None if mask is None else mask.copy())
        top = stored_range(image, data_range)
        work = image
        if image.dtype == np.uint16 and top < 65535:
            if int(image.max()) > top:
                raise PerturbationError(
                    f"{self.name}: image maximum {int(image.max())} exceeds its data_range {top:g}; "
                    "pass the stored range (e.g. 4095 for 12-bit, 65535 for 16-bit)"
                )
            work = np.rint(image.astype(np.float64) * (65535.0 / top)).astype(np.uint16)
        kwargs: dict = {}
        if "fov" in self.accepts:
            if fov is None:
                from medfm_hf.perturbations.fov import detect_fov

                fov = detect_fov(image, self.modalities[0], top)
            kwargs["fov"] = np.asarray(fov, bool)
        if "window" in self.accepts and window is not None:
            kwargs["window"] = window
        opacity: list = []
        if "occlusion" in self.accepts:
            kwargs["occlusion"] = opacity
        if self.geometric or "mask" in self.accepts:
            out, moved = self.fn(work, strength, rng, mask=mask, **kwargs)
        else:
            out, moved = self.fn(work, strength, rng, **kwargs), (None if mask is None else mask.copy())
        if work is not image:
            out = np.clip(np.rint(out.astype(np.float64) * (top / 65535.0)), 0, top).astype(np.uint16)
        return PerturbationOutput(out, moved, opacity[0] if opacity else None)

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
    ceiling: float | None = None,
    ceiling_note: str = "",
    side_effects: tuple[str, ...] = (),
    side_effect_note: str = "",
    pending: tuple[str, ...] = (),
    pending_note: str = "",
) -> Callable[[Callable], Callable]:
    """Decorator that registers a perturbation function (see the module docstring for the contract).

    ``ceiling`` (required) is the strongest physically plausible strength and ``ceiling_note`` (required)
    says why, with a citation or the physical reasoning; the function's docstring repeats it in a
    paragraph beginning ``Ceiling:``. The calibrator never exceeds it.
    ``side_effects`` declares which of :data:`SIDE_EFFECTS` are the artifact itself (with a note);
    ``pending`` lists side effects that are *defects* of the current model, not the artifact, still to be
    fixed (the property test allows them; ``benchmarks/physics_audit.py`` lists each with the number of
    cells where it still occurs, so a fixed defect shows as "seen on 0 cells").
    The function may take keyword arguments ``fov``, ``window``, ``occlusion`` (a list to which it
    appends its opacity map) and ``mask`` (then it returns ``(image, mask)``).
    """

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"perturbation {name!r} registered twice")
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            raise ValueError(f"perturbation {name!r}: unknown modalities {bad}")
        family = fn.__module__.rsplit(".", 1)[-1]
        if ceiling is None:
            raise ValueError(f"perturbation {name!r}: declare its physical ceiling (ceiling=..., the strongest "
                             "physically plausible strength, and ceiling_note=..., why)")
        if not ceiling_note.strip():
            raise ValueError(f"perturbation {name!r}: ceiling_note must say why {ceiling:g} is the physical ceiling")
        if not strength_range[0] < ceiling <= strength_range[1]:
            raise ValueError(f"perturbation {name!r}: ceiling {ceiling:g} must lie inside its strength range "
                             f"({strength_range[0]:g}, {strength_range[1]:g}]")
        bad_fx = [e for e in (*side_effects, *pending) if e not in SIDE_EFFECTS]
        if bad_fx:
            raise ValueError(f"perturbation {name!r}: unknown side effects {bad_fx}; use {SIDE_EFFECTS}")
        params = set(inspect.signature(fn).parameters)
        accepts = frozenset(params & {"fov", "window", "occlusion", "mask"})
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
            ceiling=None if ceiling is None else float(ceiling),
            ceiling_note=ceiling_note,
            side_effects=frozenset(side_effects),
            side_effect_note=side_effect_note,
            pending=frozenset(pending),
            pending_note=pending_note,
            occluding="occlusion" in accepts,
            accepts=accepts,
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


def catalog_rows(modality: str | None = None) -> list[dict[str, str]]:
    """One dict per registered perturbation (the columns of the table)."""
    from medfm_hf import MODALITIES

    rows = []
    for name in list_perturbations(modality):
        p = get_perturbation(name)
        mods = "all" if set(p.modalities) == set(MODALITIES) else ",".join(p.modalities)
        notes = []
        if p.geometric:
            notes.append("moves mask")
        if p.colour_only:
            notes.append("colour only")
        rows.append({
            "name": name,
            "family": p.family,
            "strength": f"{p.strength_range[0]:g}-{p.strength_range[1]:g}",
            "ceiling": f"{p.max_strength:g}",
            "modalities": mods,
            "notes": ", ".join(notes),
            "description": p.description,
        })
    return rows
