"""Segment Anything (Kirillov et al., ICCV 2023) ViT-B/L/H with a box prompt.

Weights: ``facebook/sam-vit-base|large|huge`` (transformers folder or Hub id) or the original
``sam_vit_{b,l,h}_*.pth``.

Preprocessing, as SAM's ``ResizeLongestSide`` + ``Sam.preprocess``, in torch (differentiable):

1. grey images are replicated to 3 channels;
2. resize so the longest side is ``S`` (1024), bilinear with antialiasing (the reference resizes with PIL);
3. normalise with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) -- on 0-255 pixels
   these are SAM's (123.675, 116.28, 103.53) / (58.395, 57.12, 57.375);
4. pad bottom/right with zeros to ``S x S``; the box is scaled like the image.

Output: low-resolution logits -> bilinear to ``S x S`` -> crop the padding -> bilinear to ``H x W`` ->
sigmoid (SAM's ``postprocess_masks`` then its 0-logit threshold = probability 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medfm_hf.models.base import check_batch
from medfm_hf.models.registry import register_segmenter
from medfm_hf.models.sam_hf import HFSamSegmenter, load_sam_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide.get_preprocess_shape``."""
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_preprocess(images: torch.Tensor, image_size: int = 1024) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's preprocessing: ``(B, C, H, W)`` in ``[0, 1]`` -> normalised, padded ``(B, 3, S, S)`` and the
    resized ``(h, w)`` before padding."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    h, w = resized_shape(*images.shape[-2:], image_size)
    x = images
    if (h, w) != tuple(images.shape[-2:]):
        x = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return F.pad(x, (0, image_size - w, 0, image_size - h)), (h, w)


class SAM(HFSamSegmenter):
    """SAM through :class:`transformers.SamModel` with SAM's own pre/postprocessing (module docstring)."""

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities ``(B, H, W)``; differentiable with respect to ``images``."""
        images, boxes = check_batch(images, boxes, "sam")
        H, W = images.shape[-2:]
        s = self.image_size
        pixel_values, (h, w) = sam_preprocess(images, s)
        scale = torch.tensor([w / W, h / H, w / W, h / H], dtype=boxes.dtype, device=boxes.device)
        logits = self.low_res_logits(pixel_values, boxes * scale)[:, None]
        logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)[..., :h, :w]
        logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits[:, 0])


@register_segmenter("sam", description="Segment Anything ViT-B/L/H (transformers or original .pth)")
def sam(
    checkpoint: str | None = None,
    *,
    size: str = "vit_b",
    image_size: int | None = None,
    multimask_output: bool = False,
    decoder_heads: int = 8,
    seed: int = 0,
) -> SAM:
    """Build :class:`SAM`; ``size`` (``vit_b``/``vit_l``/``vit_h``/``tiny``) only matters without a checkpoint."""
    model, loaded = load_sam_model(
        checkpoint, size=size, image_size=image_size, decoder_heads=decoder_heads, seed=seed
    )
    return SAM(model, multimask_output=multimask_output, pretrained=loaded)
