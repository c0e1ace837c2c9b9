"""Gemini (2.5 Flash and others) through the ``google-genai`` SDK.

Facts this client is built on:

* the SDK does **not** retry 429/5xx unless given ``HttpRetryOptions``; we give it one attempt and retry
  ourselves (:func:`medfm_hf.vlm.api.call_with_retries`), so attempts are counted the same way as for
  OpenAI-compatible endpoints;
* ``response.text`` is ``None`` when the prompt or the candidate was blocked, or when thinking used the
  whole ``max_output_tokens`` (thinking tokens count against it): the response records
  ``finish_reason``, ``block_reason`` and the thinking-token count, and every such case is a failure
  (``status`` ``"blocked"`` or ``"empty"``);
* ``thinking_budget`` (``GenerationConfig.thinking_budget``): 0 = off, -1 = dynamic, ``None`` = model
  default;
* images are sent as lossless PNG bytes; the key is read from ``$GEMINI_API_KEY`` (or ``api_key_env``).
"""

from __future__ import annotations

import logging
from typing import Any

from medfm_hf.vlm.api import (
    APICallError,
    APIModel,
    RetryPolicy,
    _common_api_options,
    _reject_key_arguments,
    api_key_from_env,
    png_bytes,
)
from medfm_hf.vlm.base import YXYX_1000, GenerationConfig, PromptFormat, Query, Response
from medfm_hf.vlm.registry import register_vlm

logger = logging.getLogger(__name__)

__all__ = ["GEMINI_FORMAT", "GeminiVLM"]

GEMINI_FORMAT = PromptFormat(
    kind="gemini_contents",
    default_system="",
    image_first=True,
    example='contents=[Part.from_bytes(png, "image/png"), "{prompt}"], system_instruction=system',
)

# Gemini finish reasons that mean "no usable answer because of a policy".
_BLOCKING = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE"}
_HARM_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                    "HARM_CATEGORY_DANGEROUS_CONTENT")


def _enum_name(v: Any) -> str | None:
    if v is None:
        return None
    return str(getattr(v, "name", None) or getattr(v, "value", None) or v)


class GeminiVLM(APIModel):
    """One ``generate_content`` request per ``(image, prompt)``."""

    family = "gemini"
    prompt_format = GEMINI_FORMAT
    box_convention = YXYX_1000

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "GEMINI_API_KEY",
        timeout: float = 60.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        safety_block_none: bool = False,
        seed: int = 0,
        cache: Any = None,
        **kw: Any,
    ) -> None:
        from google import genai
        from google.genai import types

        endpoint = (base_url or "https://generativelanguage.googleapis.com").rstrip("/")
        super().__init__(f"gemini:{endpoint}:{model}:block_none={safety_block_none}", concurrency=concurrency,
                         retry=retry, seed=seed, cache=cache, **kw)
        self.model = model
        self.base_url = endpoint
        self.timeout = float(timeout)
        self.safety_block_none = safety_block_none
        http_kw: dict[str, Any] = {
            "base_url": endpoint + "/" if base_url else None,  # None keeps the SDK's own URL and API version
            "timeout": int(self.timeout * 1000),
        }
        if hasattr(types, "HttpRetryOptions"):  # older SDKs have no retry option (and never retry)
            http_kw["retry_options"] = types.HttpRetryOptions(attempts=1)
        http = types.HttpOptions(**http_kw)
        self._types = types
        self._client = genai.Client(api_key=api_key_from_env(api_key_env, "gemini"), http_options=http)

    def request_config(self, config: GenerationConfig) -> Any:
        t = self._types
        kw: dict[str, Any] = {
            "temperature": config.temperature,
            "seed": config.seed,
            "max_output_tokens": config.max_new_tokens,
            "automatic_function_calling": t.AutomaticFunctionCallingConfig(disable=True),
        }
        if config.top_p is not None:
            kw["top_p"] = config.top_p
        system = self.system_text(config)
        if system:
            kw["system_instruction"] = system
        if config.thinking_budget is not None:
            kw["thinking_config"] = t.ThinkingConfig(thinking_budget=config.thinking_budget)
        if self.safety_block_none:
            kw["safety_settings"] = [t.SafetySetting(category=c, threshold="BLOCK_NONE") for c in _HARM_CATEGORIES]
        return t.GenerateContentConfig(**kw)

    def _call(self, query: Query, config: GenerationConfig) -> Response:
        t = self._types
        contents = [t.Part.from_bytes(data=png_bytes(query.image), mime_type="image/png"), query.prompt]
        out = self._client.models.generate_content(model=self.model, contents=contents,
                                                   config=self.request_config(config))
        feedback = getattr(out, "prompt_feedback", None)
        block = _enum_name(getattr(feedback, "block_reason", None)) if feedback is not None else None
        cand = out.candidates[0] if out.candidates else None
        finish_raw = _enum_name(getattr(cand, "finish_reason", None)) if cand is not None else None
        parts = (cand.content.parts or []) if cand is not None and cand.content is not None else []
        raw = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))
        usage = getattr(out, "usage_metadata", None)
        thoughts = getattr(usage, "thoughts_token_count", None)
        finish = {"STOP": "stop", "MAX_TOKENS": "length"}.get(finish_raw or "", (finish_raw or "unknown").lower())
        r = Response(
            text=raw.strip(),
            raw_text=raw,
            finish_reason=finish,
            tokens_in=getattr(usage, "prompt_token_count", None),
            tokens_out=getattr(usage, "candidates_token_count", None),
            extra={"thoughts_token_count": thoughts, "gemini_finish_reason": finish_raw},
        )
        if block or finish_raw in _BLOCKING:
            r.status, r.block_reason = "blocked", block or finish_raw
            r.finish_reason = "blocked" if block else r.finish_reason
            r.text = ""
            r.error = f"blocked ({'prompt' if block else 'candidate'}: {r.block_reason})"
        elif not r.text:
            why = f"; thinking used {thoughts} tokens" if thoughts else ""
            r.status, r.error = "empty", f"empty answer (finish_reason={finish}{why})"
        elif finish == "length":
            r.status = "truncated"
        return r

    def _classify(self, exc: BaseException) -> APICallError:
        from google.genai import errors

        if isinstance(exc, APICallError):
            return exc
        if isinstance(exc, errors.APIError):
            code = int(getattr(exc, "code", 0) or 0)
            msg = str(getattr(exc, "message", "") or "")[:200]
            return APICallError(f"HTTP {code}{': ' + msg if msg else ''}", retryable=code in self.retry.statuses,
                                status=code)
        name = type(exc).__name__
        if "Timeout" in name or isinstance(exc, TimeoutError):
            return APICallError(f"timeout after {self.timeout:g}s", retryable=True)
        if "Connect" in name or isinstance(exc, ConnectionError):
            return APICallError(f"connection error: {name}", retryable=True)
        return APICallError(f"{name}: {str(exc)[:200]}", retryable=False)


@register_vlm("gemini", description="Gemini through google-genai (default gemini-2.5-flash)", kind="api",
              default_checkpoint="gemini-2.5-flash")
def gemini(checkpoint: str | None = None, **kw: Any) -> GeminiVLM:
    """``checkpoint`` = the model name; options ``base_url``, ``api_key_env``, ``timeout``, ``concurrency``,
    ``retry``, ``safety_block_none``, ``cache``."""
    _reject_key_arguments("gemini", kw)
    _common_api_options(kw)
    return GeminiVLM(checkpoint or "gemini-2.5-flash", **kw)
