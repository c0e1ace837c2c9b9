"""The vision-language model registry (mirrors :mod:`medfm_hf.models.registry`).

Adding a family is one decorated factory in its own module::

    @register_vlm("medgemma", description="MedGemma 4B-it (Gemma 3)", kind="local")
    def medgemma(checkpoint=None, **kw) -> VisionLanguageModel: ...

``create_vlm("medgemma", checkpoint="google/medgemma-4b-it", device="cuda")`` builds it;
``create_vlm("medgemma", size="tiny")`` builds a tiny random in-process model (tests, benchmarks).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medfm_hf.vlm.base import VisionLanguageModel

logger = logging.getLogger(__name__)

_FAMILY_MODULES: tuple[str, ...] = (
    "medfm_hf.vlm.local",
    "medfm_hf.vlm.llava_med",
    "medfm_hf.vlm.openai_api",
    "medfm_hf.vlm.gemini",
)


@dataclass(frozen=True)
class VLMSpec:
    name: str
    factory: Callable[..., VisionLanguageModel]
    description: str
    kind: str  # "local" (transformers weights) or "api"
    default_checkpoint: str | None


_REGISTRY: dict[str, VLMSpec] = {}


def register_vlm(
    name: str, *, description: str, kind: str = "local", default_checkpoint: str | None = None
) -> Callable[[Callable[..., VisionLanguageModel]], Callable[..., VisionLanguageModel]]:
    """Register ``factory(checkpoint=None, **kw) -> VisionLanguageModel`` under ``name``."""
    if kind not in ("local", "api"):
        raise ValueError(f"kind must be 'local' or 'api', got {kind!r}")

    def deco(factory: Callable[..., VisionLanguageModel]) -> Callable[..., VisionLanguageModel]:
        if name in _REGISTRY:
            raise ValueError(f"vlm {name!r} registered twice")
        _REGISTRY[name] = VLMSpec(name, factory, description, kind, default_checkpoint)
        return factory

    return deco


def _load_families() -> None:
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def list_vlms() -> list[str]:
    """Names of every registered vision-language model family, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def vlm_spec(name: str) -> VLMSpec:
    """The registry entry of ``name`` (raises ``KeyError`` listing the known names)."""
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown vlm {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_vlm(name: str, checkpoint: str | None = None, **kw: Any) -> VisionLanguageModel:
    """Build vision-language model ``name``.

    Parameters
    ----------
    name
        One of :func:`list_vlms`: ``medgemma``, ``medgemma-1.5``, ``llava_med``, ``hf``, ``openai``,
        ``gemini``.
    checkpoint
        Local families: a local folder or a Hub id (``None`` = the family's published checkpoint; nothing
        is downloaded when ``HF_HUB_OFFLINE=1``). API families: the model name (``gpt-4o-mini``,
        ``gemini-2.5-flash``).
    **kw
        Family options: ``device``, ``dtype``, ``batch_size``, ``revision``, ``trust_remote_code``
        (local); ``base_url``, ``api_key_env``, ``concurrency``, ``timeout``, ``retry`` (API);
        ``cache`` (a :class:`~medfm_hf.vlm.cache.ResponseCache` or a path, every family);
        ``size="tiny"`` for a random in-process model (local) .
    """
    spec = vlm_spec(name)
    model = spec.factory(checkpoint=checkpoint, **kw)
    model.name = name
    return model
