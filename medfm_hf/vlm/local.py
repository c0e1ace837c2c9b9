"""Local transformers vision-language models: one generation engine for MedGemma (1 and 1.5), LLaVA-Med
(:mod:`medfm_hf.vlm.llava_med`) and any ``AutoModelForImageTextToText`` with a chat template.

What the engine guarantees, whatever the family:

* the processor's **whole** output goes to ``generate`` (for Gemma 3 that includes ``token_type_ids``,
  without which the image tokens silently lose their bidirectional attention);
* batches are **left padded** (the tokenizer's own ``padding_side`` is overridden), so batch 8 gives the
  answers of batch 1;
* only the **new** tokens are decoded; a row that never produced an end-of-sequence token is
  ``finish_reason="length"`` (counted as truncated);
* greedy decoding unless ``temperature > 0``; weights are loaded from safetensors only, with
  ``trust_remote_code`` off unless asked.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from medfm_hf.vlm.base import (
    XYXY_NORM,
    YXYX_1000,
    BoxConvention,
    GenerationConfig,
    PromptFormat,
    Query,
    Response,
    VisionLanguageModel,
    strip_reasoning,
)
from medfm_hf.vlm.registry import register_vlm

logger = logging.getLogger(__name__)

__all__ = ["TransformersVLM", "load_transformers_vlm", "resolve_dtype"]

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """``None`` = bf16 on CUDA, fp32 elsewhere; strings ``"bfloat16"``/``"bf16"``/``"float32"``/..."""
    if dtype is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def checkpoint_id(checkpoint: str, revision: str | None, config: Any = None) -> str:
    """Cache identity of a checkpoint: ``path-or-hub-id@revision``; a local folder's revision is a hash of
    its config and the names and sizes of its weight files (changing the weights changes the id)."""
    p = Path(checkpoint)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.iterdir()):
            if f.suffix in (".json", ".safetensors", ".jinja", ".model") and f.is_file():
                h.update(f.name.encode())
                h.update(str(f.stat().st_size).encode())
                if f.suffix in (".json", ".jinja"):
                    h.update(f.read_bytes())
        return f"{p.resolve()}@{h.hexdigest()[:16]}"
    rev = revision or getattr(config, "_commit_hash", None) or "main"
    return f"{checkpoint}@{rev}"


def load_transformers_vlm(
    checkpoint: str,
    *,
    model_class: Any = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a local folder or Hub id, safetensors only, in eval mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if model_class is None:
        model_class = AutoModelForImageTextToText
    torch_dtype = resolve_dtype(dtype, device)
    kw: dict[str, Any] = {"dtype": torch_dtype, "revision": revision, "trust_remote_code": trust_remote_code,
                          "use_safetensors": True}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    try:
        model = model_class.from_pretrained(checkpoint, **kw)
        processor = AutoProcessor.from_pretrained(checkpoint, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load vision-language checkpoint {checkpoint!r} ({str(exc).splitlines()[0]}); pass a local "
            "folder with config.json, *.safetensors and the processor files, or a Hub id available offline"
        ) from exc
    model.to(device).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model, processor


class TransformersVLM(VisionLanguageModel):
    """A transformers vision-language model and its processor behind the common ``generate`` contract.

    Parameters
    ----------
    model, processor
        A ``*ForConditionalGeneration`` model (eval mode) and its processor.
    model_id
        Cache identity (checkpoint and revision).
    prompt_format
        ``kind="chat_template"``: the processor's chat template with a system turn (when the system text
        is not empty) and a user turn of image and text (order from ``image_first``);
        ``kind="template"``: ``template.format(prompt=...)`` (the template holds the image placeholder).
    box_convention
        Declared box convention.
    reasoning
        Strip a ``<unused94>thought ... <unused95>`` block (MedGemma 1.5) when the config asks for it.
    batch_size
        Forward batch.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_id: str,
        *,
        family: str,
        prompt_format: PromptFormat,
        box_convention: BoxConvention,
        reasoning: bool = False,
        batch_size: int = 1,
        cache: Any = None,
    ) -> None:
        super().__init__(model_id, batch_size=batch_size, cache=cache)
        self.model = model
        self.processor = processor
        self.family = family
        self.prompt_format = prompt_format
        self.box_convention = box_convention
        self.reasoning = reasoning
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        added = getattr(tok, "added_tokens_decoder", {}) or {}
        special = {str(t) for t in [*tok.all_special_tokens, *getattr(tok, "extra_special_tokens", [])] if t}
        special |= {str(t.content) for t in added.values() if getattr(t, "special", False)}
        self._special = sorted(special, key=len, reverse=True)  # removed from ``text`` (kept in ``raw_text``)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def eos_token_ids(self) -> list[int]:
        ids: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.tokenizer):
            v = getattr(src, "eos_token_id", None) if src is not None else None
            if isinstance(v, int):
                ids.add(v)
            elif v:
                ids.update(int(x) for x in v)
        return sorted(ids)

    # -- prompt ------------------------------------------------------------------------------------------
    def render(self, query: Query, config: GenerationConfig) -> str:
        """The full prompt text (before image-token expansion) for one query."""
        fmt = self.prompt_format
        if fmt.kind == "template":
            return fmt.template.format(prompt=query.prompt)  # type: ignore[union-attr]
        system = self.system_text(config)
        user = [{"type": "text", "text": query.prompt}]
        user.insert(0 if fmt.image_first else 1, {"type": "image"})
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": user})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare_image(self, query: Query) -> Any:
        """The image handed to the processor (families override, e.g. LLaVA pads to a square)."""
        return query.image

    def encode(self, queries: list[Query], config: GenerationConfig) -> dict[str, torch.Tensor]:
        """The processor's output for a batch, left padded, on the model's device and dtype."""
        texts = [self.render(q, config) for q in queries]
        images = [[self.prepare_image(q)] for q in queries]
        tok = self.tokenizer
        tok.padding_side = "left"
        bos = tok.bos_token
        add_special = not (bos and all(t.startswith(bos) for t in texts))
        inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True,
                                add_special_tokens=add_special)
        out: dict[str, torch.Tensor] = {}
        for k, v in inputs.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
            out[k] = v
        return out

    # -- generation ----------------------------------------------------------------------------------------
    def _generate_batch(self, queries: list[Query], config: GenerationConfig) -> list[Response]:
        inputs = self.encode(queries, config)
        eos = self.eos_token_ids()
        pad = self.tokenizer.pad_token_id
        kw: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "eos_token_id": eos, "pad_token_id": pad}
        if config.temperature > 0:
            kw.update(do_sample=True, temperature=config.temperature)
            if config.top_p is not None:
                kw["top_p"] = config.top_p
            torch.manual_seed(config.seed)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kw)
        n_in = inputs["input_ids"].shape[1]
        new = out[:, n_in:].tolist()
        tokens_in = inputs["attention_mask"].sum(dim=1).tolist() if "attention_mask" in inputs else [n_in] * len(new)
        return [self.decode(row, config, tokens_in=int(t)) for row, t in zip(new, tokens_in)]

    def decode(self, new_ids: list[int], config: GenerationConfig, *, tokens_in: int | None = None) -> Response:
        """Turn one row of generated ids into a :class:`Response` (stop at the first end-of-sequence id)."""
        eos = set(self.eos_token_ids())
        cut = next((i for i, t in enumerate(new_ids) if t in eos), None)
        finish = "stop" if cut is not None else "length"
        ids = new_ids if cut is None else new_ids[:cut]
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        text, thinking = (raw, None)
        if self.reasoning and config.strip_reasoning:
            text, thinking = strip_reasoning(raw)
        for s in self._special:
            text = text.replace(s, "")
        text = text.strip()
        status = "empty" if not text else ("truncated" if finish == "length" else "ok")
        return Response(
            text=text,
            raw_text=raw,
            finish_reason=finish,
            tokens_in=tokens_in,
            tokens_out=len(ids) + (1 if cut is not None else 0),
            thinking=thinking,
            status=status,
            error=None if text else f"empty answer (finish_reason={finish})",
        )


# ---------------------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------------------

MEDGEMMA_FORMAT = PromptFormat(
    kind="chat_template",
    default_system="You are an expert radiologist.",
    image_first=False,
    example=(
        "<bos><start_of_turn>user\nYou are an expert radiologist.\n\n{prompt}\n\n<start_of_image>"
        "[256 image tokens]<end_of_image>\n\n<end_of_turn>\n<start_of_turn>model\n"
    ),
)

HF_FORMAT = PromptFormat(kind="chat_template", default_system="", image_first=True,
                         example="the checkpoint's chat template, user turn [image, text]")


def _local_factory(
    *,
    family: str,
    checkpoint: str | None,
    default_checkpoint: str | None,
    prompt_format: PromptFormat,
    box_convention: BoxConvention,
    reasoning: bool,
    tiny_builder: Any,
    model: Any = None,
    processor: Any = None,
    size: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    batch_size: int = 1,
    cache: Any = None,
    forbid_fp16: bool = False,
    cls: type[TransformersVLM] | None = None,
    missing_checkpoint_hint: str = "",
) -> TransformersVLM:
    torch_dtype = resolve_dtype(dtype, device)
    if forbid_fp16 and torch_dtype == torch.float16:
        raise ValueError(f"{family}: float16 gives empty output for Gemma 3 models; use dtype='bfloat16'")
    if model is not None or processor is not None:
        if model is None or processor is None:
            raise ValueError(f"{family}: pass both model= and processor=, or a checkpoint")
        model_id = f"{family}:{checkpoint or type(model).__name__}@{revision or 'in-memory'}"
        model = model.to(device=device, dtype=torch_dtype).eval()
    elif size is not None:
        if size != "tiny":
            raise ValueError(f"{family}: size must be 'tiny' (a random in-process model), got {size!r}")
        model, processor = tiny_builder(seed=seed)
        model = model.to(device=device, dtype=torch_dtype).eval()
        model_id = f"{family}:tiny-random@seed={seed}"
        logger.warning("%s: tiny model with RANDOM weights (fine for tests/benchmarks only)", family)
    else:
        checkpoint = checkpoint or default_checkpoint
        if checkpoint is None:
            raise ValueError(
                f"{family}: pass checkpoint= (a local folder or Hub id), or size='tiny'{missing_checkpoint_hint}"
            )
        model, processor = load_transformers_vlm(
            checkpoint, device=device, dtype=torch_dtype, revision=revision, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
        )
        model_id = checkpoint_id(checkpoint, revision, model.config)
    return (cls or TransformersVLM)(
        model, processor, model_id, family=family, prompt_format=prompt_format, box_convention=box_convention,
        reasoning=reasoning, batch_size=batch_size, cache=cache,
    )


def _tiny_gemma(seed: int = 0):
    from medfm_hf.vlm.tiny import tiny_gemma3

    return tiny_gemma3(seed=seed)


@register_vlm("medgemma", description="MedGemma 4B-it (Gemma 3, transformers)", default_checkpoint="google/medgemma-4b-it")
def medgemma(checkpoint: str | None = None, **kw: Any) -> TransformersVLM:
    return _local_factory(
        family="medgemma", checkpoint=checkpoint, default_checkpoint="google/medgemma-4b-it",
        prompt_format=MEDGEMMA_FORMAT, box_convention=YXYX_1000, reasoning=False, tiny_builder=_tiny_gemma,
        forbid_fp16=True, **kw,
    )


@register_vlm(
    "medgemma-1.5", description="MedGemma 1.5 4B-it (Gemma 3; strips the reasoning block)",
    default_checkpoint="google/medgemma-1.5-4b-it",
)
def medgemma_15(checkpoint: str | None = None, **kw: Any) -> TransformersVLM:
    return _local_factory(
        family="medgemma-1.5", checkpoint=checkpoint, default_checkpoint="google/medgemma-1.5-4b-it",
        prompt_format=MEDGEMMA_FORMAT, box_convention=YXYX_1000, reasoning=True, tiny_builder=_tiny_gemma,
        forbid_fp16=True, **kw,
    )


@register_vlm("hf", description="any transformers AutoModelForImageTextToText with a chat template")
def hf(
    checkpoint: str | None = None,
    *,
    system: str = "",
    image_first: bool = True,
    box_format: str = "xyxy_norm",
    box_instruction: str | None = None,
    reasoning: bool = False,
    **kw: Any,
) -> TransformersVLM:
    """Options: ``system`` (default system text, none by default), ``image_first``, ``box_format`` (the
    checkpoint's convention, e.g. ``"xyxy_pixel"`` for Qwen2.5-VL, in the processor-resized image) and
    ``box_instruction``."""
    fmt = PromptFormat(kind="chat_template", default_system=system, image_first=image_first,
                       example=HF_FORMAT.example)
    if box_format == XYXY_NORM.box_format and box_instruction is None:
        box = XYXY_NORM
    else:
        box = BoxConvention(box_format, box_instruction or f"Answer with the bounding box in {box_format} format.",
                            source="declared by the user")
    return _local_factory(
        family="hf", checkpoint=checkpoint, default_checkpoint=None, prompt_format=fmt, box_convention=box,
        reasoning=reasoning, tiny_builder=_tiny_gemma, **kw,
    )

