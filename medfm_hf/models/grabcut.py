"""GrabCut (Rother, Kolmogorov & Blake, SIGGRAPH 2004): the weight-free, box-initialised baseline.

OpenCV's ``cv2.grabCut`` in ``GC_INIT_WITH_RECT`` mode: colour GMMs for foreground (inside the box) and
background (outside), refined by graph cuts for ``iterations`` rounds. OpenCV initialises the GMMs with
k-means drawing from its global RNG, so the RNG is re-seeded with ``seed`` before every image: the same input
always gives the same mask. The output is binary (probability 1 for definite/probable foreground, else 0) and
not differentiable: attacks refuse it (``differentiable = False``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from medfm_hf.models.base import Segmenter, SegmenterInputError, check_batch
from medfm_hf.models.registry import register_segmenter

logger = logging.getLogger(__name__)


class GrabCut(Segmenter):
    """Box-initialised OpenCV GrabCut (see the module docstring).

    Parameters
    ----------
    iterations
        GrabCut refinement rounds (OpenCV's ``iterCount``).
    seed
        Seed of OpenCV's RNG, reset before each image (determinism).
    """

    differentiable = False
    pretrained = True  # nothing to load

    def __init__(self, iterations: int = 5, seed: int = 0) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = int(iterations)
        self.seed = int(seed)
        self.eval()

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Binary foreground ``(B, H, W)`` as float; no gradients."""
        import cv2

        images, boxes = check_batch(images, boxes, "grabcut")
        h, w = images.shape[-2:]
        arr = (images.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = np.zeros((arr.shape[0], h, w), np.float32)
        for i, (img, box) in enumerate(zip(arr, boxes.detach().cpu().numpy())):
            x0, y0 = int(np.clip(np.floor(box[0]), 0, w - 1)), int(np.clip(np.floor(box[1]), 0, h - 1))
            x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 1, w)), int(np.clip(np.ceil(box[3]), y0 + 1, h))
            if x0 == 0 and y0 == 0 and x1 == w and y1 == h:
                raise SegmenterInputError(
                    f"grabcut: box {box.tolist()} of image {i} covers the whole {w}x{h} image, leaving no "
                    "background to model; pass a tighter box"
                )
            mask = np.zeros((h, w), np.uint8)
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.setRNGSeed(self.seed)
            bgr = np.ascontiguousarray(img[..., ::-1])
            cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
            out[i] = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
        return torch.from_numpy(out).to(images.device)

    def trainable_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """GrabCut has no parameters: every group is empty."""
        return {"adapters": [], "prompt_encoder": [], "mask_decoder": []}


@register_segmenter("grabcut", description="OpenCV box-initialised GrabCut (no weights)", needs_weights=False)
def grabcut(checkpoint: str | None = None, *, iterations: int = 5, seed: int = 0) -> GrabCut:
    """Build :class:`GrabCut`; it has no weights, so ``checkpoint`` must be ``None``."""
    if checkpoint is not None:
        raise ValueError("grabcut has no weights; do not pass a checkpoint")
    return GrabCut(iterations=iterations, seed=seed)
