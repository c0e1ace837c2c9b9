"""Vision-language models behind one contract (see :mod:`medfm_hf.vlm.base`).

>>> from medfm_hf.vlm import create_vlm, GenerationConfig
>>> vlm = create_vlm("medgemma", size="tiny")          # doctest: +SKIP
>>> [r.text for r in vlm.generate([(image, "What organ is shown?")], GenerationConfig(max_new_tokens=64))]
"""

from medfm_hf.vlm.base import (
    BoxConvention,
    GenerationConfig,
    PromptFormat,
    Query,
    Response,
    VisionLanguageModel,
    strip_reasoning,
    summarize_responses,
)
from medfm_hf.vlm.cache import ResponseCache
from medfm_hf.vlm.registry import create_vlm, list_vlms, register_vlm, vlm_spec

__all__ = [
    "BoxConvention",
    "GenerationConfig",
    "PromptFormat",
    "Query",
    "Response",
    "ResponseCache",
    "VisionLanguageModel",
    "create_vlm",
    "list_vlms",
    "register_vlm",
    "strip_reasoning",
    "summarize_responses",
    "vlm_spec",
]
