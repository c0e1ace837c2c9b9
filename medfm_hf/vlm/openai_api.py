"""OpenAI-compatible chat endpoints (OpenAI GPT-4o-mini, a vLLM server, any compatible server).

* images are sent as lossless **PNG** data URLs (``detail`` recorded in the model id);
* ``temperature`` (0 by default) and ``seed`` are **always** sent: vLLM otherwise applies the model's own
  sampling defaults from its ``generation_config.json``;
* the SDK's retries are off; :func:`medfm_hf.vlm.api.call_with_retries` retries 408/409/429/5xx,
  connection errors and timeouts with exponential backoff and jitter; ``concurrency`` requests at a time;
* the key is read from ``$OPENAI_API_KEY`` (or ``api_key_env``), never from an argument, never logged.
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
    png_data_url,
)
from medfm_hf.vlm.base import XYXY_NORM, GenerationConfig, PromptFormat, Query, Response
from medfm_hf.vlm.registry import register_vlm

logger = logging.getLogger(__name__)

__all__ = ["OPENAI_FORMAT", "OpenAIChatVLM"]

OPENAI_FORMAT = PromptFormat(
    kind="openai_chat",
    default_system="",
    image_first=True,
    example='[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}, '
    '{"type": "text", "text": "{prompt}"}]}]',
)

_FINISH = {"stop": "stop", "length": "length", "content_filter": "blocked", "tool_calls": "tool_calls"}


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        s = headers.get("retry-after")
        return float(s) if s is not None else None
    except (TypeError, ValueError):
        return None


class OpenAIChatVLM(APIModel):
    """One chat-completions request per ``(image, prompt)``."""

    family = "openai"
    prompt_format = OPENAI_FORMAT
    box_convention = XYXY_NORM

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        image_detail: str = "high",
        token_param: str = "max_completion_tokens",
        seed: int = 0,
        cache: Any = None,
        **kw: Any,
    ) -> None:
        from openai import OpenAI

        if token_param not in ("max_completion_tokens", "max_tokens"):
            raise ValueError(f"token_param must be 'max_completion_tokens' or 'max_tokens', got {token_param!r}")
        if image_detail not in ("auto", "low", "high", "original"):
            raise ValueError(f"image_detail must be auto/low/high/original, got {image_detail!r}")
        endpoint = (base_url or "https://api.openai.com/v1").rstrip("/")
        super().__init__(f"openai:{endpoint}:{model}:detail={image_detail}", concurrency=concurrency,
                         retry=retry, seed=seed, cache=cache, **kw)
        self.model = model
        self.base_url = endpoint
        self.image_detail = image_detail
        self.token_param = token_param
        self.timeout = float(timeout)
        self._client = OpenAI(api_key=api_key_from_env(api_key_env, "openai"), base_url=endpoint, max_retries=0,
                              timeout=self.timeout)

    def messages(self, query: Query, config: GenerationConfig) -> list[dict[str, Any]]:
        system = self.system_text(config)
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        msgs.append({
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png_data_url(query.image), "detail": self.image_detail}},
                {"type": "text", "text": query.prompt},
            ],
        })
        return msgs

    def _call(self, query: Query, config: GenerationConfig) -> Response:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages(query, config),
            "temperature": config.temperature,
            "seed": config.seed,
            self.token_param: config.max_new_tokens,
        }
        if config.top_p is not None:
            kw["top_p"] = config.top_p
        out = self._client.chat.completions.create(**kw)
        if not out.choices:
            raise APICallError("response without choices", retryable=True)
        choice = out.choices[0]
        msg = choice.message
        raw = msg.content or ""
        refusal = getattr(msg, "refusal", None)
        finish = _FINISH.get(choice.finish_reason or "", (choice.finish_reason or "unknown").lower())
        usage = out.usage
        r = Response(
            text=raw.strip(),
            raw_text=raw,
            finish_reason=finish,
            tokens_in=getattr(usage, "prompt_tokens", None),
            tokens_out=getattr(usage, "completion_tokens", None),
            extra={"system_fingerprint": getattr(out, "system_fingerprint", None)},
        )
        if finish == "blocked" or refusal:
            r.status, r.block_reason = "blocked", ("refusal" if refusal else choice.finish_reason)
            r.text = ""
            r.error = f"blocked ({r.block_reason})"
        elif not r.text:
            r.status, r.error = "empty", f"empty answer (finish_reason={finish})"
        elif finish == "length":
            r.status = "truncated"
        return r

    def _classify(self, exc: BaseException) -> APICallError:
        import openai

        if isinstance(exc, APICallError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return APICallError(f"timeout after {self.timeout:g}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            return APICallError(f"connection error: {type(exc).__name__}", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            code = int(exc.status_code)
            body = getattr(exc, "body", None)
            detail = ""
            if isinstance(body, dict):
                detail = str((body.get("error") or {}).get("message", "") if isinstance(body.get("error"), dict)
                             else body.get("message", ""))[:200]
            return APICallError(f"HTTP {code}{': ' + detail if detail else ''}", retryable=code in self.retry.statuses,
                                status=code, retry_after=_retry_after(getattr(exc.response, "headers", None)))
        return APICallError(f"{type(exc).__name__}: {str(exc)[:200]}", retryable=False)


@register_vlm("openai", description="OpenAI-compatible chat endpoint (GPT-4o-mini, vLLM, any server)", kind="api",
              default_checkpoint="gpt-4o-mini")
def openai_chat(checkpoint: str | None = None, **kw: Any) -> OpenAIChatVLM:
    """``checkpoint`` = the served model name; options ``base_url``, ``api_key_env``, ``timeout``,
    ``concurrency``, ``retry``, ``image_detail``, ``token_param``, ``cache``."""
    _reject_key_arguments("openai", kw)
    _common_api_options(kw)
    return OpenAIChatVLM(checkpoint or "gpt-4o-mini", **kw)
