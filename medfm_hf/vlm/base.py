"""The one contract every vision-language model family fulfils.

``model.generate([(image, prompt), ...], GenerationConfig(...)) -> [Response, ...]``: one
:class:`Response` per input, in input order, never an exception for a failed sample (a failed call is a
``Response`` with ``error`` set, which evaluation counts as wrong). Local transformers models run in
batches of ``batch_size``; API clients run ``concurrency`` requests at a time. A :class:`ResponseCache`
(optional) answers repeated requests without calling the model again.

Each family declares, as data, its :class:`PromptFormat` (how a question becomes the model's input) and
its :class:`BoxConvention` (the box format a grounding prompt asks for and the parser reads back), so a
task can state the convention in the prompt and parse the answer with
:func:`medfm_hf.metrics.boxes.parse_box` in the same convention.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
from PIL import Image

from medfm_hf.metrics.boxes import BOX_FORMATS, ParsedBox, parse_box

logger = logging.getLogger(__name__)

__all__ = [
    "BoxConvention",
    "GenerationConfig",
    "PromptFormat",
    "Query",
    "Response",
    "VisionLanguageModel",
    "image_sha256",
    "strip_reasoning",
    "summarize_responses",
    "to_pil_rgb",
]

# Response.status values. "error" (transport/API failure) is the only one never cached.
STATUSES: tuple[str, ...] = ("ok", "truncated", "empty", "blocked", "error")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings shared by every family (each ignores what it cannot honour, and says so).

    Parameters
    ----------
    max_new_tokens
        Cap on generated tokens. Make it large enough that answers are never cut: a response that hits it
        has ``finish_reason == "length"`` and ``status == "truncated"`` (counted by
        :func:`summarize_responses`).
    temperature
        0 (default) = greedy / deterministic; always sent to APIs (vLLM otherwise uses the model's own
        sampling defaults).
    top_p
        Nucleus sampling (only used when ``temperature > 0``).
    seed
        Always sent to APIs; seeds ``torch`` sampling for local models when ``temperature > 0``.
    system
        System text; ``None`` = the family's default (:attr:`PromptFormat.default_system`), ``""`` = none.
    thinking_budget
        Gemini 2.5 thinking tokens (0 = off, -1 = dynamic, ``None`` = the model's default). Thinking tokens
        count against ``max_new_tokens`` there.
    strip_reasoning
        Remove a ``<unused94>thought ... <unused95>`` block (MedGemma 1.5) from ``text`` (``raw_text``
        keeps it).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    seed: int = 0
    system: str | None = None
    thinking_budget: int | None = None
    strip_reasoning: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Response:
    """One model answer (or failure).

    Attributes
    ----------
    text
        The answer to score: new tokens only, special tokens and any reasoning block removed, stripped.
        ``""`` when the call failed or was blocked.
    raw_text
        What the model produced, reasoning block included (``""`` on failure).
    finish_reason
        ``"stop"`` (end of sequence), ``"length"`` (hit ``max_new_tokens``), ``"blocked"`` (safety),
        ``"error"`` (no answer), or another provider value, lower-cased (``"recitation"``,
        ``"content_filter"``).
    tokens_in, tokens_out
        Prompt tokens (image tokens included) and generated tokens; ``None`` when unknown.
    seconds
        Wall-clock of the call (for a batch, the batch's time divided by its size; 0 when cached).
    error
        ``None`` on success, otherwise one line saying what failed (never an API key).
    status
        ``"ok"``, ``"truncated"``, ``"empty"`` (no text), ``"blocked"`` or ``"error"``; everything but
        ``"ok"`` and ``"truncated"`` is a failure.
    """

    text: str
    raw_text: str = ""
    finish_reason: str = "stop"
    tokens_in: int | None = None
    tokens_out: int | None = None
    seconds: float = 0.0
    error: str | None = None
    status: str = "ok"
    thinking: str | None = None
    block_reason: str | None = None
    attempts: int = 1
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the model gave an answer (possibly truncated)."""
        return self.status in ("ok", "truncated")

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Response:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def failure(cls, error: str, *, seconds: float = 0.0, attempts: int = 1, **kw: Any) -> Response:
        return cls(text="", raw_text="", finish_reason="error", error=error, status="error",
                   seconds=seconds, attempts=attempts, **kw)


@dataclass(frozen=True)
class PromptFormat:
    """How a family turns ``(image, prompt)`` into model input.

    ``kind`` is ``"chat_template"`` (the processor's chat template, messages with a system turn and a user
    turn ``[image, text]``), ``"template"`` (``template.format(prompt=...)`` with an image placeholder),
    ``"openai_chat"`` or ``"gemini_contents"``. ``example`` is a rendered example for documentation.
    """

    kind: str
    template: str | None = None
    default_system: str = ""
    image_first: bool = True
    example: str = ""


@dataclass(frozen=True)
class BoxConvention:
    """The box format a family is asked for and parsed in (one of :data:`medfm_hf.metrics.boxes.BOX_FORMATS`).

    ``instruction`` is the sentence a grounding prompt appends so that the model answers in this
    convention; :meth:`parse` reads the answer back as a pixel ``[x0, y0, x1, y1]`` box (``None`` = no
    box, counted as a miss).
    """

    box_format: str
    instruction: str
    source: str = ""
    frame: str = "image"

    def __post_init__(self) -> None:
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box_format {self.box_format!r} is not one of {', '.join(BOX_FORMATS)}")
        if self.frame not in ("image", "padded_square"):
            raise ValueError(f"frame must be 'image' or 'padded_square', got {self.frame!r}")

    def parse(self, text: str, image_size: tuple[int, int]) -> ParsedBox | None:
        """Parse ``text`` into a pixel ``[x0, y0, x1, y1]`` box of the original image,
        ``image_size = (width, height)``.

        With ``frame="padded_square"`` (LLaVA pads the image to a centred square before the model sees
        it) the box is read in the square's coordinates, shifted back by the padding and clipped.
        """
        if self.frame == "image":
            return parse_box(text, image_size, box_format=self.box_format)
        width, height = int(image_size[0]), int(image_size[1])
        side = max(width, height)
        parsed = parse_box(text, (side, side), box_format=self.box_format)
        if parsed is None:
            return None
        dx, dy = (side - width) // 2, (side - height) // 2
        x0, y0, x1, y1 = parsed.box
        box = [
            min(max(x0 - dx, 0.0), float(width)),
            min(max(y0 - dy, 0.0), float(height)),
            min(max(x1 - dx, 0.0), float(width)),
            min(max(y1 - dy, 0.0), float(height)),
        ]
        return replace(parsed, box=box)


YXYX_1000 = BoxConvention(
    "yxyx_1000",
    'Answer with the bounding box as JSON {"box_2d": [y0, x0, y1, x1]}, coordinates normalised to '
    "integers 0-1000 (top-left is 0, 0).",
    source="Gemini box_2d convention; MedGemma 1.5 localisation prompts use the same",
)
XYXY_NORM = BoxConvention(
    "xyxy_norm",
    "Answer with the bounding box as [x0, y0, x1, y1]: top-left x, top-left y, bottom-right x, "
    "bottom-right y, each a fraction of the image width or height between 0 and 1.",
    source="LLaVA-1.5 / LLaVA-Med referring format (normalised xyxy)",
)
XYXY_NORM_PADDED = BoxConvention(
    XYXY_NORM.box_format,
    XYXY_NORM.instruction,
    source="LLaVA-1.5 / LLaVA-Med: normalised xyxy of the image padded to a centred square",
    frame="padded_square",
)


@dataclass
class Query:
    """A normalised input: an RGB PIL image, its content hash, the user prompt."""

    image: Image.Image
    prompt: str
    image_hash: str


def to_pil_rgb(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image, an ``(H, W)`` / ``(H, W, 1|3|4)`` array (uint8, or float in
    [0, 1]), or a ``(C, H, W)`` torch tensor."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if hasattr(image, "detach"):  # torch tensor, CHW
        arr = image.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)
        image = arr
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 3|4), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
                raise ValueError("a float image must be in [0, 1]; convert it to uint8 first")
            arr = np.round(np.nan_to_num(arr) * 255)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr)
    return pil.convert("RGB")


def image_sha256(image: Image.Image) -> str:
    """Hash of the decoded RGB pixels and size (independent of how the image was encoded on disk)."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


_REASONING = re.compile(r"<unused94>(.*?)(?:<unused95>|$)", re.S)


def strip_reasoning(raw: str) -> tuple[str, str | None]:
    """Split a MedGemma 1.5 answer into ``(answer, thinking)``.

    The block ``<unused94>thought ... <unused95>`` is removed; an unterminated block (the budget ran out
    inside the thought) removes everything after ``<unused94>``. ``thinking`` is ``None`` when there was
    no block.
    """
    blocks = _REASONING.findall(raw)
    if not blocks:
        return raw, None
    answer = _REASONING.sub("", raw)
    thinking = "\n".join(b.removeprefix("thought").strip() for b in blocks)
    return answer, thinking


def summarize_responses(responses: Iterable[Response]) -> dict[str, Any]:
    """Counts for a run: ``n``, ``failed`` (every non-answer, same denominator as ``n``), per status,
    ``truncated``, ``cached``, token totals and model seconds."""
    rs = list(responses)
    out: dict[str, Any] = {"n": len(rs), "failed": sum(r.failed for r in rs)}
    for s in STATUSES:
        out[s] = sum(r.status == s for r in rs)
    out["truncated"] = sum(r.truncated for r in rs)
    out["cached"] = sum(r.cached for r in rs)
    out["tokens_in"] = sum(r.tokens_in or 0 for r in rs)
    out["tokens_out"] = sum(r.tokens_out or 0 for r in rs)
    out["seconds"] = float(sum(r.seconds for r in rs))
    return out


class VisionLanguageModel:
    """Base class: input normalisation, the response cache, batching; families implement
    :meth:`_generate_batch` (a list of :class:`Query` -> a list of :class:`Response`).

    Attributes
    ----------
    name
        Registry name (set by :func:`medfm_hf.vlm.create_vlm`).
    model_id
        What identifies the answering model in the cache: checkpoint and revision (local weights) or
        endpoint and model name (APIs). Never contains a key.
    prompt_format, box_convention
        Declared conventions (see the module docstring).
    batch_size
        Queries per ``_generate_batch`` call (local models: the forward batch; APIs: requests in flight).
    """

    name: str = ""
    family: str = ""
    prompt_format: PromptFormat = PromptFormat("template", "{prompt}")
    box_convention: BoxConvention = XYXY_NORM

    def __init__(self, model_id: str, *, batch_size: int = 1, cache: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id = model_id
        self.batch_size = int(batch_size)
        self.cache = _as_cache(cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model_id={self.model_id!r}, batch_size={self.batch_size})"

    # -- public ---------------------------------------------------------------------------------------
    def system_text(self, config: GenerationConfig) -> str:
        return self.prompt_format.default_system if config.system is None else config.system

    def cache_key(self, query: Query, config: GenerationConfig) -> str:
        """sha256 of (model id, prompt format, system text, prompt, image hash, generation settings)."""
        from medfm_hf.vlm.cache import make_key

        return make_key(
            model=self.model_id,
            prompt_format=self.prompt_format.kind,
            system=self.system_text(config),
            prompt=query.prompt,
            image=query.image_hash,
            config=config.to_dict(),
        )

    def generate(
        self,
        inputs: Sequence[tuple[Any, str]] | Sequence[Query],
        config: GenerationConfig | None = None,
        *,
        progress: bool = False,
    ) -> list[Response]:
        """Answer every ``(image, prompt)``; one :class:`Response` per input, in order.

        Cached answers are returned with ``cached=True`` and ``seconds=0``; fresh answers (failures of
        kind ``"error"`` excepted) are written to the cache as each batch finishes, so an interrupted run
        resumes where it stopped.
        """
        config = config or GenerationConfig()
        queries = [q if isinstance(q, Query) else self.make_query(*q) for q in inputs]
        results: list[Response | None] = [None] * len(queries)
        keys: list[str | None] = [None] * len(queries)
        todo: list[int] = []
        for i, q in enumerate(queries):
            if self.cache is not None:
                keys[i] = self.cache_key(q, config)
                hit = self.cache.get(keys[i])
                if hit is not None:
                    hit.cached, hit.seconds = True, 0.0
                    results[i] = hit
                    continue
            todo.append(i)
        if len(todo) < len(queries):
            logger.info("%s: %d of %d answers from the cache", self.name or self.model_id,
                        len(queries) - len(todo), len(queries))
        size = self.chunk_size()
        chunks = [todo[s : s + size] for s in range(0, len(todo), size)]
        bar = None
        if progress and chunks:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=self.name or "generate", unit="sample")
        try:
            for chunk in chunks:
                t0 = time.perf_counter()
                outs = self._generate_batch([queries[i] for i in chunk], config)
                if len(outs) != len(chunk):
                    raise RuntimeError(f"{type(self).__name__} returned {len(outs)} responses for {len(chunk)} inputs")
                dt = (time.perf_counter() - t0) / len(chunk)
                for i, r in zip(chunk, outs):
                    if not r.seconds:
                        r.seconds = dt
                    results[i] = r
                if self.cache is not None:
                    self.cache.put_many(
                        [(keys[i], results[i]) for i in chunk],  # type: ignore[misc]
                        model=self.model_id,
                    )
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return [r for r in results if r is not None]

    def chunk_size(self) -> int:
        """Queries handed to one :meth:`_generate_batch` call (and written to the cache together)."""
        return self.batch_size

    def make_query(self, image: Any, prompt: str) -> Query:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        pil = to_pil_rgb(image)
        return Query(pil, prompt, image_sha256(pil))

    def grounding_prompt(self, question: str) -> str:
        """``question`` followed by this family's box instruction."""
        return f"{question.rstrip()}\n{self.box_convention.instruction}"

    def with_options(self, **kw: Any) -> VisionLanguageModel:
        """A shallow copy with attributes replaced (``batch_size=8``)."""
        import copy

        new = copy.copy(self)
        for k, v in kw.items():
            if not hasattr(new, k):
                raise AttributeError(f"{type(self).__name__} has no option {k!r}")
            setattr(new, k, v)
        return new

    # -- to implement -----------------------------------------------------------------------------------
    def _generate_batch(self, queries: list[Query], config: GenerationConfig) -> list[Response]:
        raise NotImplementedError


def _as_cache(cache: Any):
    if cache is None:
        return None
    from medfm_hf.vlm.cache import ResponseCache

    if isinstance(cache, ResponseCache):
        return cache
    return ResponseCache(cache)

