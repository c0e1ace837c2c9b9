"""Reading checkpoints, and converting SAM weights between the original and the transformers layouts.

Layouts
-------
* **original** (``segment-anything``, MedSAM's ``medsam_vit_b.pth``): keys ``image_encoder.blocks.{i}...``,
  ``prompt_encoder.pe_layer...``, ``mask_decoder.output_upscaling...``; a plain state dict, or a dict whose
  ``model`` key holds it (SAM-Med2D's ``sam-med2d_b.pth``).
* **transformers** (:class:`transformers.SamModel`, e.g. ``facebook/sam-vit-base``,
  ``flaviagiammarino/medsam-vit-base``): keys ``vision_encoder.layers.{i}...``, ``prompt_encoder.shared_embedding...``,
  ``mask_decoder.upscale_conv1...``; a ``save_pretrained`` folder (``config.json`` + safetensors) or Hub id.

The converter is a pure renaming (no tensor is changed), so a round trip is exact.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import torch

from medfm_hf.models.base import CheckpointError

logger = logging.getLogger(__name__)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch file (``weights_only=True``), on CPU.

    A dict with a ``model`` (or ``state_dict``) entry holding the tensors is unwrapped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        obj: object = load_file(path, device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle with arbitrary objects, corrupt file, ...
            raise CheckpointError(
                f"could not read {path!r} as a weights-only torch checkpoint ({exc.__class__.__name__}: {exc}); "
                "re-save it as a plain state dict (torch.save(model.state_dict(), path)) or safetensors"
            ) from exc
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path!r} does not hold a state dict of tensors (nor one under a 'model' key)")
    return dict(obj)


def format_key_mismatch(missing: list[str], unexpected: list[str], limit: int = 12) -> str:
    """One readable line per kind of mismatch, at most ``limit`` keys each."""

    def show(keys: list[str]) -> str:
        keys = sorted(keys)
        more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
    return "; ".join(parts)


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], what: str
) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys of ``state_dict``."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        msg = format_key_mismatch(missing, unexpected)
        if shapes:
            msg = "; ".join(filter(None, [msg, f"shape mismatches ({len(shapes)}): " + ", ".join(shapes[:8])]))
        raise CheckpointError(
            f"{what}: the checkpoint does not match the architecture -- {msg}. "
            "Check that the checkpoint is the right model/size (and for SAM-Med2D that it has the adapter keys)."
        )


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` after :func:`check_state_dict` (so the error names the keys)."""
    check_state_dict(module.state_dict(), state_dict, what)
    module.load_state_dict(state_dict, strict=True)


# --- original <-> transformers key renaming -------------------------------------------------------------

# (original pattern, transformers replacement), applied in order to every key.
_ORIG_TO_HF: list[tuple[str, str]] = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"^vision_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
    (r"^vision_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
    (r"^vision_encoder\.blocks\.", "vision_encoder.layers."),
    (r"^vision_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
    (r"^vision_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
    (r"^vision_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
    (r"^vision_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
    (r"^mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
]

_MLP_RE = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$")
_HF_MLP_RE = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|proj_out|layers\.(\d+))\.(.*)$")
_HF_SHARED_PE = "shared_image_embedding.positional_embedding"


def _mlp_depths(keys: list[str], regex: re.Pattern) -> dict[str, int]:
    depths: dict[str, int] = {}
    for k in keys:
        m = regex.match(k)
        if m:
            depths[m.group(1)] = max(depths.get(m.group(1), 0), int(m.group(2)) + 1)
    return depths


def original_to_hf(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original-layout SAM state dict to :class:`transformers.SamModel` keys."""
    keys = list(state_dict)
    depths = _mlp_depths(keys, _MLP_RE)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _MLP_RE.match(key)
        if m:
            head, i, rest = m.group(1), int(m.group(2)), m.group(3)
            n = depths[head]
            name = "proj_in" if i == 0 else "proj_out" if i == n - 1 else f"layers.{i - 1}"
            out[f"{head}.{name}.{rest}"] = value
            continue
        new = key
        for pat, rep in _ORIG_TO_HF:
            new = re.sub(pat, rep, new)
        out[new] = value
    pe = out.get("prompt_encoder.shared_embedding.positional_embedding")
    if pe is not None:
        out[_HF_SHARED_PE] = pe  # transformers keeps the (tied) random Fourier matrix twice
    return out


def hf_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`original_to_hf` (drops the duplicated tied positional matrix)."""
    inverse = [
        (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
        (r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"image_encoder.blocks.\1.norm\2."),
        (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
        (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
        (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
        (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
        (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
        (r"^vision_encoder\.", "image_encoder."),
        (r"^prompt_encoder\.shared_embedding\.positional_embedding$", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
        (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
        (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
        (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
        (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
        (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
        (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
        (r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"mask_decoder.transformer.layers.\1.norm\2."),
        (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
        (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
        (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
        (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    ]
    # depth of each MLP = proj_in + hidden layers + proj_out
    hidden: dict[str, int] = {}
    for k in state_dict:
        m = _HF_MLP_RE.match(k)
        if m:
            hidden.setdefault(m.group(1), 0)
            if m.group(3) is not None:
                hidden[m.group(1)] = max(hidden[m.group(1)], int(m.group(3)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key == _HF_SHARED_PE:
            continue
        m = _HF_MLP_RE.match(key)
        if m:
            head, part, rest = m.group(1), m.group(2), m.group(4)
            n = hidden[head] + 2
            i = 0 if part == "proj_in" else n - 1 if part == "proj_out" else int(m.group(3)) + 1
            out[f"{head}.layers.{i}.{rest}"] = value
            continue
        new = key
        for pat, rep in inverse:
            new = re.sub(pat, rep, new)
        out[new] = value
    return out


def is_original_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether keys follow the original ``segment-anything`` naming."""
    return any(k.startswith("image_encoder.") for k in state_dict)


def is_hf_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether keys follow :class:`transformers.SamModel` naming."""
    return any(k.startswith("vision_encoder.") for k in state_dict)
