"""The segmentation-model registry (timm style).

Adding a model family is one decorated factory in its own module::

    @register_segmenter("medsam", description="MedSAM ViT-B (Ma et al. 2024)")
    def medsam(checkpoint=None, *, size="vit_b", **kw) -> Segmenter: ...

and ``create_segmenter("medsam", checkpoint="medsam_vit_b.pth", device="cuda")`` builds it in eval mode.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from medfm_hf.models.base import Segmenter

logger = logging.getLogger(__name__)

# Modules that register segmenters when imported (one per family).
_FAMILY_MODULES: tuple[str, ...] = (
    "medfm_hf.models.medsam",
    "medfm_hf.models.sam",
    "medfm_hf.models.sam_med2d",
    "medfm_hf.models.medsam_lite",
    "medfm_hf.models.grabcut",
)


@dataclass(frozen=True)
class SegmenterSpec:
    name: str
    factory: Callable[..., Segmenter]
    description: str
    needs_weights: bool


_REGISTRY: dict[str, SegmenterSpec] = {}


def register_segmenter(
    name: str, *, description: str, needs_weights: bool = True
) -> Callable[[Callable[..., Segmenter]], Callable[..., Segmenter]]:
    """Register ``factory(checkpoint=None, **kw) -> Segmenter`` under ``name``."""

    def deco(factory: Callable[..., Segmenter]) -> Callable[..., Segmenter]:
        if name in _REGISTRY:
            raise ValueError(f"segmenter {name!r} registered twice")
        _REGISTRY[name] = SegmenterSpec(name, factory, description, needs_weights)
        return factory

    return deco


def _load_families() -> None:
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def list_segmenters() -> list[str]:
    """Names of every registered segmentation model, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def segmenter_spec(name: str) -> SegmenterSpec:
    """The registry entry of ``name`` (raises ``KeyError`` listing the known names)."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown segmenter {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_segmenter(
    name: str, checkpoint: str | None = None, device: str | torch.device | None = None, **kw
) -> Segmenter:
    """Build segmenter ``name`` from ``checkpoint`` (a local file/folder or a Hub id), in eval mode with
    ``requires_grad=False`` on every parameter (a fine-tuning strategy switches on the groups it trains).

    Parameters
    ----------
    name
        One of :func:`list_segmenters`.
    checkpoint
        Weights to load; ``None`` builds the architecture with random weights (logged as a warning; the
        returned model has ``pretrained = False``). Nothing is ever downloaded unless a Hub id is passed.
    device
        Where the model goes (default CPU).
    **kw
        Family options, e.g. ``size="tiny"`` for an in-process test model.
    """
    spec = segmenter_spec(name)
    model = spec.factory(checkpoint=checkpoint, **kw)
    model.name = name
    if device is not None:
        model = model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if spec.needs_weights and checkpoint is None:
        logger.warning("%s: no checkpoint given, the model has RANDOM weights (fine for tests/benchmarks only)", name)
    return model
