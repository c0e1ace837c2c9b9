"""The segmentation-adapter contract shared by every box-prompted model.

A segmenter is an :class:`torch.nn.Module` that maps a batch of images in ``[0, 1]`` and one box per image
to per-pixel foreground probabilities at the input resolution::

    probs = model.predict(images, boxes)        # (B, H, W) float in [0, 1], no gradients
    probs = model(images, boxes)                # the same function, differentiable (used by attacks)

* ``images`` -- ``float`` tensor ``(B, C, H, W)`` with ``C`` 1 (grey, replicated to RGB) or 3, values in
  ``[0, 1]``; :func:`to_model_input` turns ``uint8``/``uint16`` arrays into this form.
* ``boxes`` -- ``(B, 4)`` ``[x0, y0, x1, y1]`` in input pixels (the records' ``bbox``).
* ``forward`` holds the *whole* inference path -- the model's own preprocessing written in torch, the network
  and the postprocessing -- so an attack that differentiates ``forward`` attacks exactly what ``predict``
  evaluates. ``predict`` is ``forward`` under :func:`torch.no_grad`.
* Models are created in ``eval()`` mode and stay there; :meth:`Segmenter.trainable_groups` names the
  parameter groups (image encoder blocks, adapters, prompt encoder, mask decoder) a fine-tuning strategy
  selects from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


class SegmenterInputError(ValueError):
    """Bad input to a segmenter: the message says what was wrong and what to do."""


class CheckpointError(ValueError):
    """A checkpoint does not fit the architecture: the message names the missing/unexpected keys."""


def to_model_input(
    images: np.ndarray | Sequence[np.ndarray], device: torch.device | str | None = None
) -> torch.Tensor:
    """Stack ``uint8``/``uint16``/float arrays of one size into a ``(B, C, H, W)`` float tensor in ``[0, 1]``.

    Parameters
    ----------
    images
        One array or a sequence of arrays, each ``(H, W)`` grey or ``(H, W, 3)`` RGB. Integer images are
        divided by their dtype's maximum (255 or 65535); float images must already lie in ``[0, 1]``.
    device
        Where the tensor goes.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` when every image is grey, else ``(B, 3, H, W)`` (grey images replicated).

    >>> to_model_input([np.zeros((4, 5), np.uint8)]).shape
    torch.Size([1, 1, 4, 5])
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and (images.ndim == 2 or images.shape[-1] == 3):
        images = [images]
    arrays = [np.asarray(a) for a in images]
    if not arrays:
        raise SegmenterInputError("to_model_input: got no images; pass at least one (H, W) or (H, W, 3) array")
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise SegmenterInputError(
            f"to_model_input: images in one batch must share a size, got {sorted(shapes)}; "
            "batch images of equal size together (or resize them first)"
        )
    out = []
    rgb = any(a.ndim == 3 for a in arrays)
    for a in arrays:
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise SegmenterInputError(f"to_model_input: image must be (H, W) or (H, W, 3), got shape {a.shape}")
        if a.dtype == np.uint8:
            f = a.astype(np.float32) / 255.0
        elif a.dtype == np.uint16:
            f = a.astype(np.float32) / 65535.0
        elif np.issubdtype(a.dtype, np.floating):
            if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1):
                raise SegmenterInputError("to_model_input: float images must lie in [0, 1]; rescale them first")
            f = a.astype(np.float32)
        else:
            raise SegmenterInputError(f"to_model_input: unsupported dtype {a.dtype}; use uint8, uint16 or float")
        t = torch.from_numpy(np.ascontiguousarray(f))
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        if rgb and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        out.append(t)
    return torch.stack(out).to(device if device is not None else "cpu")


def check_batch(images: torch.Tensor, boxes: torch.Tensor | np.ndarray | Sequence, name: str) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Validate ``(images, boxes)`` and return them as float tensors on the images' device (RGB images).

    Shapes and boxes only (every forward pass runs it, in training and attack loops too); the pixel values
    are checked once at the entry points (:meth:`Segmenter.predict`, the attacks).
    """
    if not isinstance(images, torch.Tensor):
        raise SegmenterInputError(
            f"{name}: images must be a float tensor (B, C, H, W) in [0, 1], got {type(images).__name__}; "
            "use medfm_hf.models.to_model_input(arrays) to convert numpy images"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise SegmenterInputError(f"{name}: images must have shape (B, 1|3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise SegmenterInputError(
            f"{name}: images must be floating point in [0, 1], got {images.dtype}; use to_model_input()"
        )
    if images.shape[0] < 1 or min(images.shape[-2:]) < 1:
        raise SegmenterInputError(f"{name}: empty image batch {tuple(images.shape)}")
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32, device=images.device)
    if boxes_t.ndim == 1:
        boxes_t = boxes_t[None]
    if boxes_t.shape != (images.shape[0], 4):
        raise SegmenterInputError(
            f"{name}: boxes must have shape (B, 4) = ({images.shape[0]}, 4) [x0, y0, x1, y1], "
            f"got {tuple(boxes_t.shape)}"
        )
    h, w = images.shape[-2:]
    malformed = ~torch.isfinite(boxes_t).all(1) | (boxes_t[:, 2] <= boxes_t[:, 0]) | (boxes_t[:, 3] <= boxes_t[:, 1])
    outside = (boxes_t[:, 2] <= 0) | (boxes_t[:, 3] <= 0) | (boxes_t[:, 0] >= w) | (boxes_t[:, 1] >= h)
    if (malformed | outside).any():  # one device sync per batch for both checks
        if malformed.any():
            raise SegmenterInputError(f"{name}: every box needs finite x0 < x1 and y0 < y1, got {boxes_t.tolist()}")
        raise SegmenterInputError(
            f"{name}: box(es) {boxes_t[outside].tolist()} lie entirely outside the {h}x{w} image; boxes are "
            "[x0, y0, x1, y1] in the pixels of the image passed"
        )
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images, boxes_t


class Segmenter(nn.Module):
    """Base class of the box-prompted segmentation adapters (see the module docstring for the contract).

    Subclasses implement :meth:`forward` (differentiable, images in ``[0, 1]`` -> probabilities) and
    :meth:`trainable_groups`.
    """

    #: registry name, set by :func:`~medfm_hf.models.registry.register_segmenter`
    name: str = "segmenter"
    #: whether gradients flow from the output to the input image (attacks need it)
    differentiable: bool = True
    #: whether the weights came from a checkpoint (``False``: random initialisation)
    pretrained: bool = False

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images: torch.Tensor, boxes: torch.Tensor | np.ndarray | Sequence) -> torch.Tensor:
        """Foreground probabilities ``(B, H, W)`` for images ``(B, C, H, W)`` in ``[0, 1]`` and boxes ``(B, 4)``."""
        if isinstance(images, torch.Tensor) and images.is_floating_point() and not torch.isfinite(images).all():
            raise SegmenterInputError(f"{self.name}: images contain NaN or infinite values; check the conversion")
        return self(images, boxes)

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:  # pragma: no cover
        """Named parameter groups: ``image_encoder.block{i}``, ``adapters``, ``prompt_encoder``, ``mask_decoder``."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def init_weights_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic random initialisation of every parameter and random buffer, from ``torch.Generator(seed)``.

    Linear/convolution weights and embeddings ~ N(0, 0.02), biases 0, norms (1, 0); SAM's random Fourier
    matrices ~ N(0, 1); position tables (``pos_embed``, ``rel_pos_*``) 0, as SAM initialises them. Used for
    models built without a checkpoint (tests, benchmarks) so that no draw depends on the global RNG.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def normal_(t: torch.Tensor, std: float) -> None:
        with torch.no_grad():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float32).mul_(std).to(t))

    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("positional_embedding", "positional_encoding_gaussian_matrix"):
                # SAM's random Fourier features (a Parameter in transformers' SamModel): N(0, 1) as in SAM's
                # PositionEmbeddingRandom. At N(0, 0.02) every position gets almost the same code and a
                # model trained from scratch cannot localise its box prompt.
                normal_(p, 1.0)
            elif leaf.startswith("rel_pos") or leaf in ("pos_embed", "bias"):
                p.zero_()
            elif p.ndim == 1:  # a norm's scale (linear/conv weights and embeddings are >= 2-D)
                p.fill_(1.0)
            else:
                normal_(p, 0.02)
        for name, b in module.named_buffers():
            if name.endswith(("positional_embedding", "positional_encoding_gaussian_matrix")):
                normal_(b, 1.0)
    return module
