"""Convert an original-layout LLaVA(-Med) checkpoint into a transformers ``LlavaForConditionalGeneration``.

LLaVA-Med v1.5 (``microsoft/llava-med-v1.5-mistral-7b``) is published as ``model_type: llava_mistral``
(``LlavaMistralForCausalLM`` of the LLaVA code base), which transformers cannot load. Its weights are a
Mistral-7B language model, an ``mlp2x_gelu`` projector and (in some copies) the CLIP ViT-L/14-336
vision tower. The transformers conversion script is not part of the wheel, so this module does it:

=============================================================  ===============================================
original key                                                   transformers 5 ``LlavaForConditionalGeneration``
=============================================================  ===============================================
``model.embed_tokens`` / ``model.layers.N`` / ``model.norm``    ``model.language_model.*``
``lm_head.weight``                                             ``lm_head.weight``
``model.mm_projector.0`` / ``model.mm_projector.2``            ``model.multi_modal_projector.linear_1`` / ``linear_2``
``model.vision_tower.vision_tower.vision_model.*``             ``model.vision_tower.*``
=============================================================  ===============================================

When the checkpoint holds no vision tower, ``vision_model`` must point to a local CLIP checkpoint
(``openai/clip-vit-large-patch14-336``: a ``CLIPModel`` or ``CLIPVisionModel`` folder with safetensors).
The tokenizer gains ``<image>`` and (if it has none) ``<pad>``; the embedding matrix and ``lm_head`` grow
to a multiple of 64 rows and the new rows are the **mean** of the old ones (deterministic; the image row
is replaced by image features and the pad row is never attended, so they do not change any answer).
Every tensor keeps its dtype; weights are read and written as safetensors only; the output folder is
written to a temporary sibling and renamed when complete. The written key set is checked against the
model class (built on the ``meta`` device) and any missing or unexpected key is named in the error.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["CLIP_VIT_L_336", "convert_llava_med", "map_original_key"]

# openai/clip-vit-large-patch14-336 vision tower (used when neither the source nor a CLIP folder gives it).
CLIP_VIT_L_336: dict[str, Any] = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
    patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_VISION_PREFIXES = ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower.vision_tower.",
                    "vision_tower.vision_model.", "vision_model.")
_SHARD_BYTES = 4 * 1024**3


def map_original_key(key: str) -> str | None:
    """The transformers 5 name of an original LLaVA key (``None`` = vision tower key, handled separately)."""
    if key.startswith("model.vision_tower."):
        return None
    if key.startswith("model.mm_projector."):
        rest = key[len("model.mm_projector."):]
        idx, _, param = rest.partition(".")
        names = {"0": "linear_1", "2": "linear_2"}
        if idx not in names:
            raise ValueError(f"unexpected projector key {key!r} (only mlp2x_gelu projectors are supported)")
        return f"model.multi_modal_projector.{names[idx]}.{param}"
    if key == "lm_head.weight":
        return key
    if key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    raise ValueError(f"unexpected key {key!r} in the LLaVA checkpoint")


def _strip_vision_prefix(key: str) -> str | None:
    for p in _VISION_PREFIXES:
        if key.startswith(p):
            return key[len(p):]
    return None


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        bins = sorted(folder.glob("*.bin"))
        hint = " (it has .bin files: re-save them as safetensors first)" if bins else ""
        raise FileNotFoundError(f"no *.safetensors weights in {folder}{hint}")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path} not found: is this a LLaVA checkpoint folder?") from exc


def _text_config(src_cfg: dict[str, Any]) -> Any:
    from transformers import LlamaConfig, MistralConfig

    mt = src_cfg.get("model_type", "")
    cls = {"llava_mistral": MistralConfig, "llava_llama": LlamaConfig, "llava": LlamaConfig}.get(mt)
    if cls is None:
        raise ValueError(f"model_type {mt!r} is not an original LLaVA layout (llava_mistral, llava_llama, llava)")
    known = set(cls().to_dict())
    keep = {k: v for k, v in src_cfg.items() if k in known and k not in ("model_type", "architectures",
                                                                         "transformers_version", "_name_or_path")}
    return cls(**keep)


def _vision(src_sd: dict[str, torch.Tensor], src_cfg: dict[str, Any], vision_model: str | None):
    """(vision config, vision state dict with transformers 5 CLIPVisionModel keys, image processor)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPVisionConfig

    folder: Path | None = None
    for cand in (vision_model, src_cfg.get("mm_vision_tower")):
        if cand and Path(cand).is_dir():
            folder = Path(cand)
            break
    if vision_model and folder is None:
        raise FileNotFoundError(f"vision model folder {vision_model!r} not found")
    tower = {k2: v for k, v in src_sd.items() if k.startswith("model.vision_tower.")
             if (k2 := _strip_vision_prefix(k)) is not None}
    if folder is not None:
        cfg = _read_json(folder / "config.json")
        vcfg = CLIPConfig(**cfg).vision_config if cfg.get("model_type") == "clip" else CLIPVisionConfig(**cfg)
        if not tower:
            tower = {k2: v for k, v in _read_safetensors(folder).items() if (k2 := _strip_vision_prefix(k)) is not None}
            if not tower:  # a CLIPVisionModel saved by transformers 5 has no prefix
                tower = {k: v for k, v in _read_safetensors(folder).items() if not k.startswith(("text_", "logit"))}
        proc_file = folder / "preprocessor_config.json"
        processor = CLIPImageProcessor.from_pretrained(str(folder)) if proc_file.exists() else None
    else:
        if not tower:
            raise ValueError(
                "the checkpoint has no vision tower weights: pass the CLIP ViT-L/14-336 folder "
                "(openai/clip-vit-large-patch14-336) with --vision-model"
            )
        name = str(src_cfg.get("mm_vision_tower", ""))
        if not name.endswith("clip-vit-large-patch14-336"):
            raise ValueError(f"vision tower {name!r} has no known config: pass its local folder with --vision-model")
        vcfg = CLIPVisionConfig(**CLIP_VIT_L_336)
        processor = None
    if processor is None:
        s = vcfg.image_size
        processor = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                       image_mean=_CLIP_MEAN, image_std=_CLIP_STD)
    return vcfg, tower, processor


def _grow(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] >= rows:
        return t
    extra = t.float().mean(dim=0, keepdim=True).to(t.dtype).expand(rows - t.shape[0], -1)
    return torch.cat([t, extra], dim=0)


def _save_sharded(sd: dict[str, torch.Tensor], folder: Path) -> None:
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(sd):
        n = sd[k].numel() * sd[k].element_size()
        if shards[-1] and size + n > _SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][k] = sd[k].contiguous()
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    index: dict[str, Any] = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
                             "weight_map": {}}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        index["weight_map"].update({k: name for k in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def convert_llava_med(src: str | Path, dst: str | Path, *, vision_model: str | None = None,
                      overwrite: bool = False) -> Path:
    """Convert the original-layout checkpoint in ``src`` into an HF Llava folder ``dst``.

    Parameters
    ----------
    src
        Folder with ``config.json`` (``model_type: llava_mistral``), ``*.safetensors`` and the tokenizer.
    dst
        Output folder (must not exist or be empty, unless ``overwrite``).
    vision_model
        Local CLIP folder, needed when ``src`` has no vision tower weights (and used for the vision config
        and image processor when given).

    Returns
    -------
    Path
        ``dst``; load it with ``create_vlm("llava_med", checkpoint=dst)``.
    """
    from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source checkpoint folder {src} not found")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise ValueError(f"{dst} exists and is not empty; pass --overwrite or choose another folder")
    src_cfg = _read_json(src / "config.json")
    if src_cfg.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(f"mm_projector_type {src_cfg['mm_projector_type']!r} is not supported (only mlp2x_gelu)")
    select = src_cfg.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ValueError(f"mm_vision_select_feature {select!r} is not supported (patch or cls_patch)")
    text_cfg = _text_config(src_cfg)
    src_sd = _read_safetensors(src)
    vcfg, tower, image_processor = _vision(src_sd, src_cfg, vision_model)

    tokenizer = AutoTokenizer.from_pretrained(str(src))
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_tokens(["<image>"], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    n_tok = len(tokenizer)
    rows = max(int(text_cfg.vocab_size), ((n_tok + 63) // 64) * 64)
    text_cfg.vocab_size = rows
    text_cfg.pad_token_id = tokenizer.pad_token_id
    patches = (vcfg.image_size // vcfg.patch_size) ** 2
    config = LlavaConfig(
        text_config=text_cfg.to_dict(),
        vision_config=vcfg.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_layer=int(src_cfg.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        image_seq_length=patches if select == "patch" else patches + 1,
        tie_word_embeddings=bool(src_cfg.get("tie_word_embeddings", False)),
    )
    config.pad_token_id = tokenizer.pad_token_id

    out: dict[str, torch.Tensor] = {}
    for k, v in src_sd.items():
        new = map_original_key(k)
        if new is not None:
            out[new] = v
    for k, v in tower.items():
        out["model.vision_tower." + k] = v
    for k in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if k in out:
            out[k] = _grow(out[k], rows)

    with torch.device("meta"):
        ref = LlavaForConditionalGeneration(config)
    expected = {k: tuple(t.shape) for k, t in ref.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    bad_shape = sorted(k for k in set(out) & set(expected) if tuple(out[k].shape) != expected[k])
    if missing or unexpected or bad_shape:
        def _few(ks: list[str]) -> str:
            return ", ".join(ks[:5]) + (f" (+{len(ks) - 5} more)" if len(ks) > 5 else "")

        raise ValueError(
            "converted weights do not match LlavaForConditionalGeneration: "
            + "; ".join(f"{n}: {_few(ks)}" for n, ks in (("missing", missing), ("unexpected", unexpected),
                                                          ("wrong shape", bad_shape)) if ks)
            + " (is --vision-model the tower this checkpoint was trained with?)"
        )

    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=vcfg.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy, image_token="<image>",
        num_additional_image_tokens=1,
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        dtype = next(iter(src_sd.values())).dtype
        config.dtype = str(dtype).removeprefix("torch.")
        config.save_pretrained(str(tmp))
        gen = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id, "do_sample": False}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
        processor.save_pretrained(str(tmp))
        _save_sharded(out, tmp)
        (tmp / "conversion.json").write_text(json.dumps({
            "source": str(src.resolve()), "source_model_type": src_cfg.get("model_type"),
            "vision_model": str(Path(vision_model).resolve()) if vision_model else None,
            "vision_from_source": any(k.startswith("model.vision_tower.") for k in src_sd),
            "added_tokens": {"<image>": config.image_token_index, "pad": tokenizer.pad_token_id},
            "vocab_rows": rows, "new_rows": "mean of the original embedding rows",
        }, indent=2))
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s (%d tensors, vocab %d rows, image token %d)", dst, len(out), rows, config.image_token_index)
    return dst
