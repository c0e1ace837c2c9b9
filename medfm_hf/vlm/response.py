"""One model answer (or failure): the record every family returns and the response cache stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["STATUSES", "Response"]

# Response.status values. "error" (transport/API failure) is the only one never cached.
STATUSES: tuple[str, ...] = ("ok", "truncated", "empty", "blocked", "error")



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
