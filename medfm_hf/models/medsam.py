"""MedSAM (Ma et al., *Segment anything in medical images*, Nat. Commun. 2024): SAM ViT-B fine-tuned on
1.5 M medical image-mask pairs, prompted by a box.

Weights: ``medsam_vit_b.pth`` (a plain state dict in the original SAM layout) or the transformers port
``flaviagiammarino/medsam-vit-base`` (a folder or Hub id). Do not use ``wanglab/medsam-vit-base``'s processor:
it applies ImageNet mean/std, which MedSAM never saw.

Preprocessing, as in MedSAM's inference script, written in torch so it is differentiable:

1. grey images are replicated to 3 channels;
2. resize straight to ``S x S`` (``S`` = 1024) with cubic interpolation: by default the exact linear operator of
   the reference's scikit-image ``resize(order=3)`` (a cubic B-spline), applied in torch; the result is
   clipped to the image's own range like scikit-image does;
3. min-max to ``[0, 1]`` per image (``(x - min) / max(max - min, 1e-8)``), **no** ImageNet mean/std;
4. the box is scaled by ``S / W`` and ``S / H``.

Output: the single-mask token (``multimask_output=False``), low-resolution ``S/4`` logits -> sigmoid ->
bilinear resize to ``H x W`` (probabilities; the reference thresholds them at 0.5).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from medfm_hf.models.base import check_batch
from medfm_hf.models.registry import register_segmenter
from medfm_hf.models.sam_hf import HFSamSegmenter, load_sam_model


@functools.lru_cache(maxsize=16)
def _spline_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The linear map of scikit-image's 1-D ``resize(order=3, anti_aliasing=True)`` from ``n_in`` to ``n_out``.

    scikit-image resizes with a cubic B-spline (``scipy.ndimage.zoom``, ``grid_mode=True``, mirror borders)
    after an optional Gaussian anti-aliasing filter; all of it is linear and separable, so resizing the
    identity matrix along one axis gives the exact operator (column ``j`` = response to pixel ``j``).
    """
    from skimage.transform import resize

    eye = np.eye(n_in, dtype=np.float64)
    return resize(eye, (n_out, n_in), order=3, preserve_range=True, anti_aliasing=True, clip=False)


def medsam_preprocess(images: torch.Tensor, image_size: int = 1024, interpolation: str = "spline") -> torch.Tensor:
    """MedSAM's image preprocessing in torch: ``(B, C, H, W)`` in ``[0, 1]`` -> ``(B, 3, S, S)`` in ``[0, 1]``.

    Parameters
    ----------
    images
        ``(B, 1|3, H, W)`` in ``[0, 1]``; grey is replicated to RGB.
    image_size
        ``S`` (1024 for MedSAM).
    interpolation
        ``"spline"`` (default): the exact linear operator of the reference's scikit-image
        ``resize(order=3, anti_aliasing=True)`` (cubic B-spline), applied as two matrix products;
        ``"bicubic"``: torch's cubic-convolution ``interpolate`` (a = -0.75), slightly different at edges.
        Either way the result is clipped to the image's range (scikit-image's ``clip=True``), then
        min-max normalised. The reference's cast to ``uint8`` before the min-max is not reproduced (it is not
        differentiable); it changes values by less than 1/255 of the range.

    Differentiable with respect to ``images``.
    """
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    h, w = images.shape[-2:]
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    if interpolation == "spline":
        ay = torch.as_tensor(_spline_matrix(h, image_size), dtype=images.dtype, device=images.device)
        ax = ay if w == h else torch.as_tensor(_spline_matrix(w, image_size), dtype=images.dtype, device=images.device)
        x = ay @ images @ ax.T
    elif interpolation == "bicubic":
        x = F.interpolate(images, size=(image_size, image_size), mode="bicubic", align_corners=False)
    else:
        raise ValueError(f"interpolation must be 'spline' or 'bicubic', got {interpolation!r}")
    x = torch.clamp(x, lo, hi)  # scikit-image's resize clips to the input range (clip=True)
    lo2 = x.amin(dim=(1, 2, 3), keepdim=True)
    hi2 = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo2) / torch.clamp(hi2 - lo2, min=1e-8)


class MedSAM(HFSamSegmenter):
    """MedSAM through :class:`transformers.SamModel` with MedSAM's own pre/postprocessing (module docstring).

    ``interpolation`` selects the resize of :func:`medsam_preprocess` (``"spline"``, the reference's, or
    ``"bicubic"``).
    """

    interpolation: str = "spline"

    def preprocess(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, boxes)`` in model space."""
        h, w = images.shape[-2:]
        s = self.image_size
        scale = torch.tensor([s / w, s / h, s / w, s / h], dtype=boxes.dtype, device=boxes.device)
        return medsam_preprocess(images, s, self.interpolation), boxes * scale

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities ``(B, H, W)``; differentiable with respect to ``images``."""
        images, boxes = check_batch(images, boxes, "medsam")
        pixel_values, model_boxes = self.preprocess(images, boxes)
        logits = self.low_res_logits(pixel_values, model_boxes)
        probs = torch.sigmoid(logits)[:, None]
        return F.interpolate(probs, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


@register_segmenter("medsam", description="MedSAM ViT-B (medsam_vit_b.pth or the transformers port)")
def medsam(
    checkpoint: str | None = None,
    *,
    size: str = "vit_b",
    image_size: int | None = None,
    decoder_heads: int = 8,
    seed: int = 0,
    interpolation: str = "spline",
) -> MedSAM:
    """Build :class:`MedSAM` (``size``/``image_size`` only matter without a checkpoint: random weights)."""
    model, loaded = load_sam_model(
        checkpoint, size=size, image_size=image_size, decoder_heads=decoder_heads, seed=seed
    )
    if interpolation not in ("spline", "bicubic"):
        raise ValueError(f"interpolation must be 'spline' or 'bicubic', got {interpolation!r}")
    segmenter = MedSAM(model, multimask_output=False, pretrained=loaded)
    segmenter.interpolation = interpolation
    return segmenter
