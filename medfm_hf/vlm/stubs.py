"""Loopback stub servers for the OpenAI-compatible and Gemini REST APIs (tests and benchmarks).

A :class:`StubServer` listens on ``127.0.0.1`` (an OS-chosen port), answers with a *script* of replies
(then a default), records every request (path and JSON body; the authorisation headers are recorded
only as "present"), and serves a **bounded** number of requests: its loop stops after
``max_requests`` or when the context exits, and each connection has a short socket timeout, so a test
can never hang on it.

>>> with StubServer("openai", script=[StubReply(429), StubReply(200)]) as srv:   # doctest: +SKIP
...     vlm = create_vlm("openai", "stub-model", base_url=srv.url)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StubReply", "StubServer", "gemini_body", "openai_body"]


@dataclass
class StubReply:
    """One scripted reply: HTTP ``status``, JSON ``body`` (``None`` = the kind's default success body
    for status 200, an error body otherwise), seconds of ``delay`` before answering, extra ``headers``."""

    status: int = 200
    body: dict[str, Any] | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def _prompt_of(kind: str, request: dict[str, Any]) -> str:
    try:
        if kind == "openai":
            content = request["messages"][-1]["content"]
            return next(c["text"] for c in content if c.get("type") == "text")
        parts = request["contents"][-1]["parts"]
        return next(p["text"] for p in parts if "text" in p)
    except (KeyError, IndexError, StopIteration, TypeError):
        return ""


def openai_body(text: str, finish_reason: str = "stop", prompt_tokens: int = 11, completion_tokens: int = 3,
                refusal: str | None = None) -> dict[str, Any]:
    """A chat-completions response body."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub-model",
        "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": text, "refusal": refusal}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def gemini_body(text: str | None, finish_reason: str | None = "STOP", block_reason: str | None = None,
                prompt_tokens: int = 11, candidates_tokens: int = 3, thoughts_tokens: int | None = None) -> dict[str, Any]:
    """A ``generateContent`` response body (``text=None`` = a candidate without text parts;
    ``block_reason`` = a blocked prompt, no candidates)."""
    body: dict[str, Any] = {"usageMetadata": {"promptTokenCount": prompt_tokens}, "modelVersion": "stub"}
    if block_reason is not None:
        body["promptFeedback"] = {"blockReason": block_reason}
        return body
    content: dict[str, Any] = {"role": "model"}
    if text is not None:
        content["parts"] = [{"text": text}]
        body["usageMetadata"]["candidatesTokenCount"] = candidates_tokens
    cand: dict[str, Any] = {"content": content, "index": 0}
    if finish_reason is not None:
        cand["finishReason"] = finish_reason
    body["candidates"] = [cand]
    if thoughts_tokens is not None:
        body["usageMetadata"]["thoughtsTokenCount"] = thoughts_tokens
    return body


def _error_body(kind: str, status: int) -> dict[str, Any]:
    if kind == "openai":
        return {"error": {"message": f"stub error {status}", "type": "stub", "code": status}}
    return {"error": {"code": status, "message": f"stub error {status}", "status": "UNAVAILABLE"}}


class _CountingServer(ThreadingHTTPServer):
    accepted = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1
        super().process_request(request, client_address)


class StubServer:
    """A scripted loopback HTTP server speaking ``kind`` = ``"openai"`` or ``"gemini"``.

    Parameters
    ----------
    kind
        Which API's paths and bodies.
    script
        Replies used in order, one per request; afterwards ``default`` answers.
    default
        A :class:`StubReply`, or ``callable(request_json) -> StubReply``; ``None`` = 200 with an answer
        that echoes the prompt (``"stub: <prompt>"``).
    max_requests
        The serving loop ends after this many requests (later connections are refused).
    socket_timeout
        Seconds a connection may stay idle before the server drops it.
    """

    def __init__(self, kind: str, script: list[StubReply] | None = None,
                 default: StubReply | Callable[[dict[str, Any]], StubReply] | None = None,
                 max_requests: int = 1000, socket_timeout: float = 5.0) -> None:
        if kind not in ("openai", "gemini"):
            raise ValueError(f"kind must be 'openai' or 'gemini', got {kind!r}")
        self.kind = kind
        self.script = list(script or [])
        self.default = default
        self.max_requests = int(max_requests)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._running = False
        self._in_flight = 0
        self.max_in_flight = 0  # most requests the server was holding at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = socket_timeout

            def log_message(self, *args: Any) -> None:  # silence the default stderr log
                return

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    req = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    req = {}
                reply = server._next_reply(self.path, req, self.headers)
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if reply.delay:
                        time.sleep(reply.delay)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                body = reply.body
                if body is None:
                    body = server._default_body(req) if reply.status == 200 else _error_body(server.kind, reply.status)
                data = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = _CountingServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.timeout = 0.05
        self._thread = threading.Thread(target=self._serve, name=f"stub-{kind}", daemon=True)

    # -- replies ------------------------------------------------------------------------------------------
    def _default_body(self, req: dict[str, Any]) -> dict[str, Any]:
        text = "stub: " + _prompt_of(self.kind, req)
        return openai_body(text) if self.kind == "openai" else gemini_body(text)

    def _next_reply(self, path: str, req: dict[str, Any], headers: Any) -> StubReply:
        auth = bool(headers.get("Authorization") or headers.get("x-goog-api-key"))
        with self._lock:
            self.requests.append({"path": path, "json": req, "auth_present": auth})
            if self.script:
                return self.script.pop(0)
        d = self.default
        if d is None:
            return StubReply(200)
        return d(req) if callable(d) else d

    # -- serving -------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while self._running and self._httpd.accepted < self.max_requests:
            self._httpd.handle_request()  # returns after accepting one connection or ``timeout`` seconds

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to give the client (``.../v1`` for OpenAI, the root for Gemini)."""
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai" else root

    def __enter__(self) -> StubServer:
        self._running = True
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._httpd.server_close()
