"""Shared machinery of the API families: keys from the environment, PNG encoding, retries with
exponential backoff and jitter, bounded concurrency.

Both SDKs are created with their own retries **off** (``max_retries=0`` for openai, one attempt for
google-genai, which by default does not retry 429/5xx at all); :func:`call_with_retries` retries
408/409/429/5xx and timeouts for both, so every attempt is counted and a call that never succeeds is a
recorded failure (``Response.status == "error"``), never an exception.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from medfm_hf.vlm.base import GenerationConfig, Query, Response, VisionLanguageModel

logger = logging.getLogger(__name__)

__all__ = ["APIModel", "RetryPolicy", "api_key_from_env", "call_with_retries", "png_bytes"]

RETRY_STATUSES: tuple[int, ...] = (408, 409, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings: ``attempts`` in total (1 = no retry), delay ``initial * multiplier**k`` capped at
    ``max_delay``, plus a uniform jitter in ``[0, jitter * delay]``; a server's ``Retry-After`` (seconds)
    is honoured up to ``max_delay``."""

    attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    statuses: tuple[int, ...] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        base = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        if retry_after is not None:
            base = min(self.max_delay, max(base, retry_after))
        return base + rng.uniform(0.0, self.jitter * base)


class APICallError(Exception):
    """A classified API failure: ``retryable`` decides whether another attempt is made."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def call_with_retries(
    fn: Callable[[], Response],
    classify: Callable[[BaseException], APICallError],
    policy: RetryPolicy,
    rng: random.Random,
    *,
    sleep: Callable[[float], None] = time.sleep,
    label: str = "",
) -> Response:
    """Run ``fn`` until it returns, retrying what ``classify`` calls retryable; a final failure becomes a
    ``Response`` with ``status="error"`` and the number of attempts made."""
    t0 = time.perf_counter()
    last: APICallError | None = None
    for attempt in range(policy.attempts):
        try:
            r = fn()
            r.attempts = attempt + 1
            r.seconds = time.perf_counter() - t0
            return r
        except Exception as exc:  # noqa: BLE001 -- every failure is classified and recorded
            last = classify(exc)
            if not last.retryable or attempt + 1 == policy.attempts:
                break
            wait = policy.delay(attempt, rng, last.retry_after)
            logger.info("%s: attempt %d failed (%s); retrying in %.2fs", label, attempt + 1, last, wait)
            sleep(wait)
    assert last is not None
    n = attempt + 1
    logger.warning("%s: failed after %d attempt(s): %s", label, n, last)
    return Response.failure(f"{last} (after {n} attempt{'s' if n > 1 else ''})",
                            seconds=time.perf_counter() - t0, attempts=n)


def api_key_from_env(env_var: str, family: str) -> str:
    """The key in ``$env_var``; a clear error when it is unset. Keys are never accepted as arguments."""
    key = os.environ.get(env_var, "")
    if not key:
        raise ValueError(
            f"{family}: set the API key in the environment variable {env_var} (keys are read from the "
            "environment only; for a local server without authentication set it to any value, e.g. EMPTY)"
        )
    return key


def png_bytes(image: Image.Image) -> bytes:
    """Lossless PNG encoding (JPEG would add its own compression artefacts to a perturbation study)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _reject_key_arguments(family: str, kw: dict[str, Any]) -> None:
    for bad in ("api_key", "key", "token"):
        if bad in kw:
            raise TypeError(f"{family}: API keys are read from the environment only; use api_key_env=NAME, not {bad}=")


def _common_api_options(kw: dict[str, Any]) -> None:
    """Options every family accepts, mapped for an API client: ``batch_size`` is the concurrency,
    ``device``/``dtype`` do not apply."""
    if "batch_size" in kw:
        bs = kw.pop("batch_size")
        kw.setdefault("concurrency", bs)
    kw.pop("device", None)
    kw.pop("dtype", None)


class APIModel(VisionLanguageModel):
    """An API family: ``batch_size`` = ``concurrency`` requests in flight, each retried per ``retry``.

    Subclasses implement :meth:`_call` (one request, raising on failure) and :meth:`_classify`.
    """

    def __init__(self, model_id: str, *, concurrency: int = 4, retry: RetryPolicy | None = None,
                 seed: int = 0, cache: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(model_id, batch_size=concurrency, cache=cache)
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._sleep = sleep

    @property
    def concurrency(self) -> int:
        """Requests in flight at most."""
        return self.batch_size

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"concurrency must be >= 1, got {value}")
        self.batch_size = int(value)

    def chunk_size(self) -> int:
        # Several waves per chunk keep ``concurrency`` requests in flight while a slow one finishes;
        # answers reach the cache every chunk.
        return max(4 * self.concurrency, 16)

    def _call(self, query: Query, config: GenerationConfig) -> Response:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> APICallError:
        raise NotImplementedError

    def _one(self, query: Query, config: GenerationConfig) -> Response:
        with self._rng_lock:
            rng = random.Random(self._rng.getrandbits(64))
        return call_with_retries(lambda: self._call(query, config), self._classify, self.retry, rng,
                                 sleep=self._sleep, label=self.name or self.model_id)

    def _generate_batch(self, queries: list[Query], config: GenerationConfig) -> list[Response]:
        if len(queries) == 1:
            return [self._one(queries[0], config)]
        with ThreadPoolExecutor(max_workers=min(len(queries), self.concurrency)) as pool:
            return list(pool.map(lambda q: self._one(q, config), queries))
