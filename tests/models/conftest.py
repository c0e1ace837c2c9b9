"""Shared helpers for the model-adapter tests: tiny models and reference SAM builds (no downloads)."""

from __future__ import annotations

from functools import partial

import pytest
import torch


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fill every persistent tensor with seeded noise (position tables included, which SAM zero-initialises),
    so that a conversion that drops or swaps a tensor cannot go unnoticed: >=2-D ~ N(0, 1/fan_in),
    1-D ~ N(1, 0.05) for scales and N(0, 0.05) for biases."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():  # persistent tensors only (not pixel_mean)
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if t.ndim >= 2:
                t.copy_(noise / (t[0].numel() ** 0.5))
            else:
                t.copy_(noise * 0.05 + (0.0 if name.endswith("bias") else 1.0))
    return module


def reference_sam(image_size: int = 256, embed: int = 64, depth: int = 2, heads: int = 2, window: int = 8,
                  global_idx: tuple[int, ...] = (1,), dim: int = 64, dec_mlp: int = 128, iou_hidden: int = 64):
    """A tiny model of the original ``segment-anything`` implementation (the reference)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = image_size // 16
    enc = ImageEncoderViT(
        img_size=image_size, patch_size=16, embed_dim=embed, depth=depth, num_heads=heads, mlp_ratio=4,
        out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        window_size=window, global_attn_indexes=global_idx,
    )
    pe = PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(image_size, image_size),
                       mask_in_chans=16)
    dec = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=dec_mlp, num_heads=8),
        transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=iou_hidden,
    )
    return Sam(enc, pe, dec).eval()


def reference_low_res(ref, pixel_values: torch.Tensor, boxes: torch.Tensor, multimask: bool = False):
    """segment-anything's decoder run one image at a time (its ``predict_masks`` assumes one image)."""
    emb = ref.image_encoder(pixel_values)
    outs, ious = [], []
    for i in range(pixel_values.shape[0]):
        sparse, dense = ref.prompt_encoder(points=None, boxes=boxes[i : i + 1], masks=None)
        low, iou = ref.mask_decoder(image_embeddings=emb[i : i + 1], image_pe=ref.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                    multimask_output=multimask)
        outs.append(low)
        ious.append(iou)
    return torch.cat(outs), torch.cat(ious)


@pytest.fixture()
def images_boxes():
    gen = torch.Generator().manual_seed(3)
    images = torch.rand((2, 3, 200, 240), generator=gen)
    boxes = torch.tensor([[20.0, 30.0, 120.0, 150.0], [50.0, 40.0, 200.0, 180.0]])
    return images, boxes


@pytest.fixture()
def ref():
    """The helpers above, as a fixture (test modules cannot import a conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(randomize_=randomize_, sam=reference_sam, low_res=reference_low_res)
