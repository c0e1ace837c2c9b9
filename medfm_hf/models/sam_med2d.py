"""SAM-Med2D (Cheng et al. 2023, arXiv:2308.16184): SAM ViT-B at 256 px with an adapter in every image-encoder
block, fine-tuned on SA-Med2D-16M.

SAM-Med2D's code is not installable and its loader is non-strict (missing adapter weights are silently left
random), so this module is our own implementation of its architecture with the original parameter names, so
that ``sam-med2d_b.pth`` (``{"model": state_dict, ...}``) loads **strictly**.

Architecture (per image-encoder block, ``xn = norm2(x)`` after the attention residual)::

    x <- x + MLP(xn) + Adapter(xn)
    Adapter(z) = LayerNorm(z' + Spatial(z'))        with  z' = z * sigmoid(W2 relu(W1 avgpool(z)))
    Spatial    = relu(ConvT4x4/2(relu(Conv3x3/2(.))))   (channel branch dim -> dim/4 -> dim, no biases)

Prompt encoder and mask decoder are SAM's. Preprocessing of SAM-Med2D's predictor (``SammedPredictor``): pixels
in 0-255 normalised with mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375), then resized straight to
256 x 256 (nearest neighbour), boxes scaled per axis; three masks, the one with the highest predicted IoU kept;
logits -> bilinear to 256 -> bilinear to ``H x W`` -> sigmoid. ``resize="longest_side"`` instead resizes the
longest side to 256 (bilinear) and pads bottom/right, like SAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medfm_hf.models.base import CheckpointError, Segmenter, check_batch, init_weights_
from medfm_hf.models.checkpoints import load_strict, read_state_dict
from medfm_hf.models.registry import register_segmenter
from medfm_hf.models.sam import resized_shape

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamMed2DConfig:
    """Architecture of SAM-Med2D (defaults: the published ViT-B at 256 px)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    image_size: int = 256
    patch_size: int = 16
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    decoder_depth: int = 2
    mask_in_chans: int = 16
    iou_head_hidden: int = 256
    num_multimask_outputs: int = 3
    adapter: bool = True

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


SAM_MED2D_SIZES: dict[str, SamMed2DConfig] = {
    "vit_b": SamMed2DConfig(),
    "tiny": SamMed2DConfig(
        embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=8, prompt_dim=64,
        decoder_mlp_dim=128, iou_head_hidden=64,
    ),
}


# --- building blocks (original segment-anything parameter names) ---------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, H, W)``."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class AdapterLayer(nn.Module):
    """SAM-Med2D's block adapter (channel gating + spatial conv branch + skip + LayerNorm)."""

    def __init__(self, dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.permute(0, 3, 1, 2)
        b, c = z.shape[:2]
        z = self.channel(self.avg_pool(z).view(b, c)).view(b, c, 1, 1) * z
        z = z + self.spatial(z)
        return self.norm(z.permute(0, 2, 3, 1))


def _rel_pos_bias(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Decomposed relative-position terms (MViTv2) for a square-grid self-attention, ``(B, h*w, h*w)``."""
    if rel_h.shape[0] != 2 * h - 1 or rel_w.shape[0] != 2 * w - 1:
        raise ValueError(f"relative position table {tuple(rel_h.shape)} does not fit a {h}x{w} grid")
    idx_h = (torch.arange(h, device=q.device)[:, None] - torch.arange(h, device=q.device)[None, :]) + (h - 1)
    idx_w = (torch.arange(w, device=q.device)[:, None] - torch.arange(w, device=q.device)[None, :]) + (w - 1)
    Rh, Rw = rel_h[idx_h], rel_w[idx_w]
    b, _, d = q.shape
    r_q = q.reshape(b, h, w, d)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    return (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).reshape(b, h * w, h * w)


class EncoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int, size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1) + _rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, h, w)
        x = (attn.softmax(dim=-1) @ v).view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(x)


def _window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int]]:
    b, h, w, c = x.shape
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def _window_unpartition(x: torch.Tensor, ws: int, pad_hw: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = pad_hw
    h, w = hw
    b = x.shape[0] // (hp * wp // ws // ws)
    x = x.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous()


class EncoderBlock(nn.Module):
    def __init__(self, cfg: SamMed2DConfig, window: int) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, cfg.num_heads, window if window > 0 else cfg.grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * cfg.mlp_ratio))
        self.Adapter = AdapterLayer(dim) if cfg.adapter else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            hw = (x.shape[1], x.shape[2])
            x, pad_hw = _window_partition(x, self.window)
            x = _window_unpartition(self.attn(x), self.window, pad_hw, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        xn = self.norm2(x)
        out = x + self.mlp(xn)
        if self.Adapter is not None:
            out = out + self.Adapter(xn)
        return out


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoder(nn.Module):
    def __init__(self, cfg: SamMed2DConfig) -> None:
        super().__init__()
        self.img_size = cfg.image_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid, cfg.grid, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg, 0 if i in cfg.global_attn_indexes else cfg.window_size) for i in range(cfg.depth)
        )
        c = cfg.prompt_dim
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, c, kernel_size=1, bias=False),
            LayerNorm2d(c),
            nn.Conv2d(c, c, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


class PositionEmbeddingRandom(nn.Module):
    def __init__(self, feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords`` normalised to ``[0, 1]``, ``(..., 2)`` -> ``(..., 2 * feats)``."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class PromptEncoder(nn.Module):
    def __init__(self, cfg: SamMed2DConfig) -> None:
        super().__init__()
        c, m = cfg.prompt_dim, cfg.mask_in_chans
        self.grid = cfg.grid
        self.input_size = cfg.image_size
        self.pe_layer = PositionEmbeddingRandom(c // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, c) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, c)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, m // 4, kernel_size=2, stride=2),
            LayerNorm2d(m // 4),
            nn.GELU(),
            nn.Conv2d(m // 4, m, kernel_size=2, stride=2),
            LayerNorm2d(m),
            nn.GELU(),
            nn.Conv2d(m, c, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, c)

    def dense_pe(self) -> torch.Tensor:
        g = self.grid
        grid = torch.ones((g, g), device=self.no_mask_embed.weight.device)
        y = (grid.cumsum(0) - 0.5) / g
        x = (grid.cumsum(1) - 0.5) / g
        return self.pe_layer.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = boxes.shape[0]
        corners = (boxes + 0.5).reshape(b, 2, 2) / self.input_size
        emb = self.pe_layer.encode(corners)
        emb = torch.stack([emb[:, 0] + self.point_embeddings[2].weight[0], emb[:, 1] + self.point_embeddings[3].weight[0]], 1)
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, self.grid, self.grid)
        return emb, dense


class DecoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, heads, 2)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, cfg: SamMed2DConfig) -> None:
        super().__init__()
        c = cfg.prompt_dim
        self.layers = nn.ModuleList(
            TwoWayBlock(c, cfg.decoder_heads, cfg.decoder_mlp_dim, i == 0) for i in range(cfg.decoder_depth)
        )
        self.final_attn_token_to_image = DecoderAttention(c, cfg.decoder_heads, 2)
        self.norm_final_attn = nn.LayerNorm(c)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, depth: int) -> None:
        super().__init__()
        dims = [dim_in] + [hidden] * (depth - 1)
        outs = [hidden] * (depth - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, cfg: SamMed2DConfig) -> None:
        super().__init__()
        c = cfg.prompt_dim
        self.num_mask_tokens = cfg.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(cfg)
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(c, cfg.iou_head_hidden, self.num_mask_tokens, 3)

    def forward(self, image, image_pe, sparse, dense, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], 0)[None].expand(b, -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        src = image + dense
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        iou_out, mask_out = hs[:, 0], hs[:, 1 : 1 + self.num_mask_tokens]
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        iou = self.iou_prediction_head(iou_out)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]


class SamMed2D(Segmenter):
    """SAM-Med2D with its predictor's pre/postprocessing (see the module docstring).

    Parameters
    ----------
    config
        Architecture (:data:`SAM_MED2D_SIZES`).
    multimask_output
        ``True`` (SAM-Med2D's predictor default): keep the highest-IoU of three masks; ``False``: single token.
    resize
        ``"direct"`` (the predictor: straight to 256 x 256, nearest) or ``"longest_side"`` (bilinear + pad).
    """

    def __init__(self, config: SamMed2DConfig, *, multimask_output: bool = True, resize: str = "direct") -> None:
        super().__init__()
        if resize not in ("direct", "longest_side"):
            raise ValueError(f"resize must be 'direct' or 'longest_side', got {resize!r}")
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.multimask_output = bool(multimask_output)
        self.resize = resize
        self.image_size = config.image_size
        self.eval()

    def preprocess(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """``(pixel_values (B, 3, S, S), boxes in model pixels, (h, w) of the image inside the S x S input)``."""
        H, W = images.shape[-2:]
        s = self.image_size
        x = (images * 255.0 - self.pixel_mean) / self.pixel_std
        if self.resize == "direct":
            h, w = s, s
            if (H, W) != (s, s):
                x = F.interpolate(x, size=(s, s), mode="nearest")
        else:
            h, w = resized_shape(H, W, s)
            if (h, w) != (H, W):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            x = F.pad(x, (0, s - w, 0, s - h))
        scale = torch.tensor([w / W, h / H, w / W, h / H], dtype=boxes.dtype, device=boxes.device)
        return x, boxes * scale, (h, w)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities ``(B, H, W)``; differentiable with respect to ``images``."""
        images, boxes = check_batch(images, boxes, "sam_med2d")
        x, model_boxes, hw = self.preprocess(images, boxes)
        return self.decode(self.image_encoder(x), model_boxes, hw, tuple(images.shape[-2:]))

    def embed(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
        """The image-encoder half of :meth:`forward`: ``(embeddings, model boxes, (h, w), (H, W))`` for
        :meth:`decode` (lets a decoder-only fine-tuning cache the embeddings)."""
        images, boxes = check_batch(images, boxes, "sam_med2d")
        x, model_boxes, hw = self.preprocess(images, boxes)
        return self.image_encoder(x), model_boxes, hw, tuple(images.shape[-2:])

    def decode(self, emb: torch.Tensor, model_boxes: torch.Tensor, hw: tuple, out_hw: tuple) -> torch.Tensor:
        """The prompt/decoder half of :meth:`forward`: probabilities ``(B, H, W)`` from image embeddings."""
        s = self.image_size
        h, w = hw
        sparse, dense = self.prompt_encoder(model_boxes)
        masks, iou = self.mask_decoder(emb, self.prompt_encoder.dense_pe(), sparse, dense, self.multimask_output)
        if masks.shape[1] > 1:
            masks = masks[torch.arange(masks.shape[0], device=masks.device), iou.argmax(dim=1)][:, None]
        logits = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)[..., :h, :w]
        logits = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits[:, 0])

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """``image_encoder.patch_embed``, ``image_encoder.block{i}`` (without adapters), ``image_encoder.neck``,
        ``adapters`` (every block's adapter), ``prompt_encoder``, ``mask_decoder``."""
        enc = self.image_encoder
        groups: dict[str, list[nn.Parameter]] = {
            "image_encoder.patch_embed": list(enc.patch_embed.parameters()) + [enc.pos_embed]
        }
        adapters: list[nn.Parameter] = []
        for i, blk in enumerate(enc.blocks):
            own = [p for n, p in blk.named_parameters() if not n.startswith("Adapter.")]
            groups[f"image_encoder.block{i}"] = own
            if blk.Adapter is not None:
                adapters += list(blk.Adapter.parameters())
        groups["image_encoder.neck"] = list(enc.neck.parameters())
        groups["adapters"] = adapters
        groups["prompt_encoder"] = list(self.prompt_encoder.parameters())
        groups["mask_decoder"] = list(self.mask_decoder.parameters())
        return groups

    def load_checkpoint(self, path: str) -> None:
        """Load ``sam-med2d_b.pth`` (``{"model": state_dict}``) or a plain state dict, strictly."""
        sd = read_state_dict(path)
        for name in ("pixel_mean", "pixel_std"):  # constant buffers some checkpoints carry
            if name in sd:
                v = sd.pop(name)
                if not torch.allclose(v.float().flatten(), getattr(self, name).flatten().cpu()):
                    raise CheckpointError(f"{path!r}: {name} {v.flatten().tolist()} differs from SAM-Med2D's")
        load_strict(self, sd, f"SAM-Med2D checkpoint {path!r}")
        self.pretrained = True

    def save_checkpoint(self, path: str) -> None:
        """Write ``{"model": state_dict}``, the layout of ``sam-med2d_b.pth``."""
        torch.save({"model": {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}}, path)


@register_segmenter("sam_med2d", description="SAM-Med2D ViT-B/256 with adapters (sam-med2d_b.pth, strict)")
def sam_med2d(
    checkpoint: str | None = None,
    *,
    size: str = "vit_b",
    multimask_output: bool = True,
    resize: str = "direct",
    seed: int = 0,
    **overrides,
) -> SamMed2D:
    """Build :class:`SamMed2D` of preset ``size`` (``vit_b`` or ``tiny``; ``overrides`` change config fields)."""
    if size not in SAM_MED2D_SIZES:
        raise ValueError(f"unknown SAM-Med2D size {size!r}; choose one of {', '.join(SAM_MED2D_SIZES)}")
    cfg = SAM_MED2D_SIZES[size]
    if overrides:
        cfg = SamMed2DConfig(**{**cfg.__dict__, **overrides})
    model = SamMed2D(cfg, multimask_output=multimask_output, resize=resize)
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)
    else:
        init_weights_(model, seed)
    return model
