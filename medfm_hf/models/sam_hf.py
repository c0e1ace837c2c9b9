"""What MedSAM and SAM share: a :class:`transformers.SamModel` built from any checkpoint layout.

* :func:`sam_config` -- the architecture presets (``vit_b``/``vit_l``/``vit_h`` as published, ``tiny`` for tests:
  2 blocks, 64 wide, 256 px).
* :func:`config_from_original` -- infer the architecture from an original-layout state dict.
* :func:`load_sam_model` -- a ``SamModel`` from a ``.pth``/``.safetensors`` file (original or transformers keys,
  loaded strictly), a ``save_pretrained`` folder, a Hub id, or ``None`` (random weights).
* :class:`HFSamSegmenter` -- the box-prompted forward through ``SamModel`` that :mod:`medsam` and :mod:`sam`
  wrap with their own pre/postprocessing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from medfm_hf.models.base import CheckpointError, Segmenter, init_weights_
from medfm_hf.models.checkpoints import (
    check_state_dict,
    format_key_mismatch,
    hf_to_original,
    is_hf_layout,
    is_original_layout,
    load_strict,
    original_to_hf,
    read_state_dict,
)

logger = logging.getLogger(__name__)

#: encoder presets: hidden size, depth, heads, global-attention blocks
SAM_SIZES: dict[str, dict] = {
    "vit_b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, global_attn_indexes=[1], window_size=8),
}
#: image size of each preset when none is given (SAM/MedSAM are 1024; tiny test models 256)
DEFAULT_IMAGE_SIZE = {"vit_b": 1024, "vit_l": 1024, "vit_h": 1024, "tiny": 256}


def sam_config(size: str = "vit_b", image_size: int | None = None):
    """A :class:`transformers.SamConfig` for preset ``size`` (``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``)."""
    from transformers import SamConfig

    if size not in SAM_SIZES:
        raise ValueError(f"unknown SAM size {size!r}; choose one of {', '.join(SAM_SIZES)}")
    image_size = int(image_size or DEFAULT_IMAGE_SIZE[size])
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of the 16-px patch, got {image_size}")
    if size == "tiny":
        dim, dec_mlp, iou_hidden = 64, 128, 64
    else:
        dim, dec_mlp, iou_hidden = 256, 2048, 256
    vision = dict(SAM_SIZES[size], image_size=image_size, output_channels=dim, num_pos_feats=dim // 2)
    return SamConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=dim, image_size=image_size),
        mask_decoder_config=dict(hidden_size=dim, mlp_dim=dec_mlp, num_attention_heads=8, iou_head_hidden_dim=iou_hidden),
    )


def config_from_original(state_dict: Mapping[str, torch.Tensor], decoder_heads: int = 8):
    """Infer a :class:`transformers.SamConfig` from an original-layout SAM state dict.

    Everything is read from tensor shapes except the mask decoder's head count, which no tensor records:
    ``decoder_heads`` (8 in every published SAM/MedSAM/SAM-Med2D).
    """
    from transformers import SamConfig

    sd = state_dict
    try:
        proj = sd["image_encoder.patch_embed.proj.weight"]
        hidden, patch = int(proj.shape[0]), int(proj.shape[2])
        grid = int(sd["image_encoder.pos_embed"].shape[1])
        depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("image_encoder.blocks."))
        head_dim = int(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        rel_len = [int(sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)]
        mlp_dim = int(sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0])
        out_ch = int(sd["image_encoder.neck.0.weight"].shape[0])
        dec_dim = int(sd["mask_decoder.iou_token.weight"].shape[1])
        dec_mlp = int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
        dec_depth = 1 + max(
            int(k.split(".")[3]) for k in sd if k.startswith("mask_decoder.transformer.layers.")
        )
        cross = int(sd["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"].shape[0])
        n_masks = int(sd["mask_decoder.mask_tokens.weight"].shape[0])
        iou_hidden = int(sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
        iou_depth = 1 + max(
            int(k.split(".")[3]) for k in sd if k.startswith("mask_decoder.iou_prediction_head.layers.")
        )
        mask_ch = int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0])
        pos_feats = int(sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(
            f"cannot infer the SAM architecture from this state dict: key {exc} is missing; "
            "is it a SAM/MedSAM checkpoint in the original segment-anything layout?"
        ) from exc
    global_len = 2 * grid - 1
    global_idx = [i for i, n in enumerate(rel_len) if n == global_len]
    windowed = [n for n in rel_len if n != global_len]
    window = (windowed[0] + 1) // 2 if windowed else 14
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden,
            num_hidden_layers=depth,
            num_attention_heads=hidden // head_dim,
            image_size=grid * patch,
            patch_size=patch,
            mlp_dim=mlp_dim,
            output_channels=out_ch,
            window_size=window,
            global_attn_indexes=global_idx,
            num_pos_feats=pos_feats,
        ),
        prompt_encoder_config=dict(hidden_size=dec_dim, image_size=grid * patch, patch_size=patch, mask_input_channels=mask_ch),
        mask_decoder_config=dict(
            hidden_size=dec_dim,
            mlp_dim=dec_mlp,
            num_hidden_layers=dec_depth,
            num_attention_heads=decoder_heads,
            attention_downsample_rate=dec_dim // cross,
            num_multimask_outputs=n_masks - 1,
            iou_head_depth=iou_depth,
            iou_head_hidden_dim=iou_hidden,
        ),
    )


def load_sam_model(
    checkpoint: str | None,
    *,
    size: str = "vit_b",
    image_size: int | None = None,
    decoder_heads: int = 8,
    seed: int = 0,
) -> tuple[nn.Module, bool]:
    """Build a :class:`transformers.SamModel` and say whether it holds loaded weights.

    Parameters
    ----------
    checkpoint
        ``None`` (random weights of preset ``size``), a ``.pth``/``.pt``/``.bin``/``.safetensors`` file in
        the original or the transformers layout (loaded strictly, architecture inferred from the shapes), a
        ``save_pretrained`` folder, or a Hub id (needs the files in the local cache or network access).
    size, image_size
        The preset used when ``checkpoint`` is ``None``.
    decoder_heads
        Mask-decoder heads for original-layout files (not recorded in the tensors).
    seed
        Seed of the random weights when ``checkpoint`` is ``None`` (:func:`~medfm_hf.models.base.init_weights_`).
    """
    from transformers import SamModel

    if checkpoint is None:
        model = init_weights_(SamModel(sam_config(size, image_size)).float(), seed)
        with torch.no_grad():  # the two copies of the tied Fourier matrix must agree
            model.shared_image_embedding.positional_embedding.copy_(
                model.prompt_encoder.shared_embedding.positional_embedding
            )
        return model, False
    checkpoint = os.fspath(checkpoint)
    if os.path.isdir(checkpoint):
        if not os.path.isfile(os.path.join(checkpoint, "config.json")):
            raise CheckpointError(
                f"{checkpoint!r} is a folder without config.json; pass a transformers save_pretrained folder "
                "or the checkpoint file itself"
            )
        return _from_pretrained(SamModel, checkpoint), True
    if os.path.isfile(checkpoint):
        sd = read_state_dict(checkpoint)
        what = f"SAM checkpoint {checkpoint!r}"
        if is_original_layout(sd):
            cfg = config_from_original(sd, decoder_heads)
            model = SamModel(cfg).float()
            check_state_dict(hf_to_original(model.state_dict()), sd, what)  # errors in the file's own key names
            load_strict(model, original_to_hf(sd), what)
            return model, True
        elif is_hf_layout(sd):
            cfg = config_from_original(hf_to_original(sd), decoder_heads)
            sd = dict(sd)
            if "shared_image_embedding.positional_embedding" not in sd and (
                "prompt_encoder.shared_embedding.positional_embedding" in sd
            ):
                sd["shared_image_embedding.positional_embedding"] = sd[
                    "prompt_encoder.shared_embedding.positional_embedding"
                ]
        else:
            some = ", ".join(sorted(sd)[:5])
            raise CheckpointError(
                f"{checkpoint!r} is not a SAM checkpoint: expected keys starting with 'image_encoder.' "
                f"(original layout) or 'vision_encoder.' (transformers layout), found e.g. {some}"
            )
        model = SamModel(cfg).float()
        load_strict(model, sd, what)
        return model, True
    if checkpoint.count("/") == 1 and not checkpoint.startswith((".", "/")):
        return _from_pretrained(SamModel, checkpoint), True
    raise FileNotFoundError(
        f"checkpoint {checkpoint!r} is neither an existing file/folder nor a Hub id ('org/name')"
    )


def _from_pretrained(cls, where: str) -> nn.Module:
    try:
        model, info = cls.from_pretrained(where, dtype=torch.float32, output_loading_info=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"could not load {where!r} with transformers ({exc}); download it first "
            "(`hf download ORG/NAME --local-dir DIR`) and pass the folder, or check the Hub id"
        ) from exc
    missing = [k for k in info.get("missing_keys", []) if "shared_image_embedding" not in k]
    unexpected = list(info.get("unexpected_keys", []))
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys", [])]
    if missing or unexpected or mismatched:
        msg = format_key_mismatch(missing, unexpected + mismatched)
        raise CheckpointError(f"{where!r} does not match its config -- {msg}")
    return model


class HFSamSegmenter(Segmenter):
    """Box-prompted segmentation through a :class:`transformers.SamModel` (subclasses add pre/postprocessing).

    Parameters
    ----------
    model
        The ``SamModel``.
    multimask_output
        ``False``: the decoder's single-mask token (SAM's recommendation for box prompts, MedSAM's only
        mode). ``True``: three masks, the one with the highest predicted IoU is kept (per image).
    """

    def __init__(self, model: nn.Module, *, multimask_output: bool = False, pretrained: bool = False) -> None:
        super().__init__()
        self.model = model
        self.multimask_output = bool(multimask_output)
        self.pretrained = bool(pretrained)
        self.image_size = int(model.config.vision_config.image_size)
        self.eval()

    def low_res_logits(self, pixel_values: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits ``(B, s, s)`` for model-space ``pixel_values`` and ``boxes``."""
        out = self.model(pixel_values=pixel_values, input_boxes=boxes[:, None, :], multimask_output=self.multimask_output)
        masks = out.pred_masks[:, 0]  # (B, M, s, s)
        if masks.shape[1] == 1:
            return masks[:, 0]
        best = out.iou_scores[:, 0].argmax(dim=1)
        return masks[torch.arange(masks.shape[0], device=masks.device), best]

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """``image_encoder.patch_embed``, ``image_encoder.block{i}``, ``image_encoder.neck``, ``adapters`` (empty:
        SAM/MedSAM have none until a fine-tuning strategy inserts them), ``prompt_encoder``, ``mask_decoder``."""
        enc = self.model.vision_encoder
        groups: dict[str, list[nn.Parameter]] = {
            "image_encoder.patch_embed": list(enc.patch_embed.parameters())
            + ([enc.pos_embed] if getattr(enc, "pos_embed", None) is not None else [])
        }
        for i, layer in enumerate(enc.layers):
            groups[f"image_encoder.block{i}"] = list(layer.parameters())
        groups["image_encoder.neck"] = list(enc.neck.parameters())
        groups["adapters"] = []
        groups["prompt_encoder"] = list(self.model.prompt_encoder.parameters())
        groups["mask_decoder"] = list(self.model.mask_decoder.parameters())
        return groups

    def fixed_parameters(self) -> list[nn.Parameter]:
        """Parameters no fine-tuning strategy trains: SAM's random Fourier features, a fixed buffer in
        segment-anything that transformers makes a ``Parameter`` shared by the image and prompt encodings."""
        return [self.model.prompt_encoder.shared_embedding.positional_embedding]

    def original_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in the original ``segment-anything`` layout (what ``medsam_vit_b.pth`` holds)."""
        return hf_to_original(self.model.state_dict())

    def save_original(self, path: str) -> None:
        """Write the weights as an original-layout ``.pth`` state dict."""
        torch.save({k: v.detach().cpu().contiguous() for k, v in self.original_state_dict().items()}, path)

    def save_pretrained(self, folder: str) -> None:
        """Write a transformers folder (``config.json`` + safetensors) that ``checkpoint=folder`` reloads."""
        self.model.save_pretrained(folder)
