"""LLaVA-Med v1.5 (Mistral-7B) through transformers ``LlavaForConditionalGeneration``.

The published checkpoint is in the original LLaVA layout (``llava_mistral``), which transformers does not
load: convert it once with ``medfm-robust convert-llava-med SRC DST`` (:mod:`medfm_hf.vlm.convert`).

Inference reproduces the original LLaVA-Med evaluation:

* prompt ``[INST] <image>\\n{question} [/INST]`` (``conv_mistral_instruct``: empty system, BOS added by
  the tokenizer);
* the image is **padded to a square with the CLIP mean colour** (``image_aspect_ratio="pad"``), centred,
  before the CLIP processor (whose shortest-side resize + centre crop then crops nothing). The original
  adds a random +-1 px offset; we centre deterministically (``(W - H) // 2``);
* greedy, stop on ``</s>``, only the new tokens are decoded.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from medfm_hf.vlm.base import XYXY_NORM_PADDED, PromptFormat, Query
from medfm_hf.vlm.local import TransformersVLM, _local_factory
from medfm_hf.vlm.registry import register_vlm

__all__ = ["LLAVA_MED_FORMAT", "LlavaMedVLM", "expand_to_square"]

LLAVA_MED_FORMAT = PromptFormat(
    kind="template",
    template="[INST] <image>\n{prompt} [/INST]",
    default_system="",
    image_first=True,
    example="<s>[INST] <image>\\n{prompt} [/INST]",
)


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad ``image`` to a centred square of side ``max(W, H)`` filled with ``fill`` (LLaVA's
    ``expand2square`` without its random +-1 px offset)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    out = Image.new(image.mode, (side, side), fill)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


class LlavaMedVLM(TransformersVLM):
    """:class:`TransformersVLM` with LLaVA's pad-to-square preprocessing."""

    def fill_colour(self) -> tuple[int, int, int]:
        mean = getattr(self.processor.image_processor, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073]
        return tuple(int(m * 255) for m in mean)  # type: ignore[return-value]

    def prepare_image(self, query: Query) -> Any:
        return expand_to_square(query.image, self.fill_colour())


def _tiny_llava(seed: int = 0):
    from medfm_hf.vlm.tiny import tiny_llava

    return tiny_llava(seed=seed)


@register_vlm(
    "llava_med", description="LLaVA-Med v1.5 Mistral-7B (converted to LlavaForConditionalGeneration)",
    default_checkpoint=None,
)
def llava_med(checkpoint: str | None = None, **kw: Any) -> LlavaMedVLM:
    """``checkpoint``: the folder written by ``medfm-robust convert-llava-med`` (or any HF-format
    LLaVA-Mistral checkpoint)."""
    return _local_factory(  # type: ignore[return-value]
        family="llava_med", checkpoint=checkpoint, default_checkpoint=None, prompt_format=LLAVA_MED_FORMAT,
        box_convention=XYXY_NORM_PADDED, reasoning=False, tiny_builder=_tiny_llava, cls=LlavaMedVLM,
        missing_checkpoint_hint="; convert the original checkpoint first: medfm-robust convert-llava-med SRC DST",
        **kw,
    )
