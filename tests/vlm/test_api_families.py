"""API families against loopback stub servers (127.0.0.1, bounded request loops, short timeouts):
retries, exhaustion, timeouts, blocked and thinking-exhausted answers, concurrency, failures counted."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from medfm_hf.vlm import GenerationConfig, create_vlm, summarize_responses
from medfm_hf.vlm.api import RetryPolicy
from medfm_hf.vlm.stubs import StubReply, StubServer, gemini_body, openai_body

FAST = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.5)
IMG = (np.random.default_rng(0).random((12, 17, 3)) * 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-dummy")


def _openai(srv, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 2.0)
    return create_vlm("openai", "stub-model", base_url=srv.url, **kw)


def _gemini(srv, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 2.0)
    return create_vlm("gemini", "gemini-2.5-flash", base_url=srv.url, **kw)


# ---------------------------------------------------------------------------------------------- OpenAI
def test_openai_429_then_success_and_request_contents():
    with StubServer("openai", script=[StubReply(429, headers={"retry-after-ms": "10"})]) as srv:
        r = _openai(srv).generate([(IMG, "What is shown?")], GenerationConfig(max_new_tokens=7, seed=5))[0]
    assert r.ok and r.text == "stub: What is shown?" and r.attempts == 2
    assert (r.tokens_in, r.tokens_out, r.finish_reason) == (11, 3, "stop")
    assert len(srv.requests) == 2
    req = srv.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth_present"]
    body = req["json"]
    assert body["temperature"] == 0 and body["seed"] == 5 and body["max_completion_tokens"] == 7
    url = body["messages"][-1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert np.array_equal(sent, IMG)  # lossless


def test_openai_500_exhaustion_is_a_counted_failure():
    with StubServer("openai", default=StubReply(500)) as srv:
        out = _openai(srv).generate([(IMG, "a"), (IMG, "b")])
    assert len(srv.requests) == 2 * FAST.attempts
    assert all(r.status == "error" and r.attempts == FAST.attempts and "HTTP 500" in r.error for r in out)
    s = summarize_responses(out)
    assert s["failed"] == 2 and s["error"] == 2 and s["n"] == 2


def test_openai_timeout_then_client_error_not_retried():
    with StubServer("openai", default=StubReply(200, delay=1.0)) as srv:
        r = _openai(srv, timeout=0.2, retry=RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.01)).generate(
            [(IMG, "slow")])[0]
    assert r.status == "error" and "timeout" in r.error and r.attempts == 2
    with StubServer("openai", default=StubReply(400)) as srv:
        r = _openai(srv).generate([(IMG, "bad")])[0]
    assert r.status == "error" and r.attempts == 1 and len(srv.requests) == 1


def test_openai_blocked_empty_and_truncated():
    script = [
        StubReply(200, openai_body("", finish_reason="content_filter")),
        StubReply(200, openai_body(None, refusal="I can't help with that")),  # type: ignore[arg-type]
        StubReply(200, openai_body("", finish_reason="stop")),
        StubReply(200, openai_body("partial ans", finish_reason="length")),
    ]
    with StubServer("openai", script=script) as srv:
        out = _openai(srv, concurrency=1).generate([(IMG, f"q{i}") for i in range(4)])
    assert [r.status for r in out] == ["blocked", "blocked", "empty", "truncated"]
    assert out[0].block_reason == "content_filter" and out[1].block_reason == "refusal"
    s = summarize_responses(out)
    assert s["failed"] == 3 and s["truncated"] == 1


def test_openai_concurrency_is_bounded_and_order_kept():
    with StubServer("openai", default=StubReply(200, delay=0.15)) as srv:
        vlm = _openai(srv, batch_size=4, device="cuda")  # the generic options map to concurrency / nothing
        assert vlm.concurrency == 4
        out = vlm.generate([(IMG, f"q{i}") for i in range(8)])
    assert [r.text for r in out] == [f"stub: q{i}" for i in range(8)]
    assert 2 <= srv.max_in_flight <= 4


# ---------------------------------------------------------------------------------------------- Gemini
def test_gemini_429_then_success_and_request_contents():
    with StubServer("gemini", script=[StubReply(429)]) as srv:
        cfg = GenerationConfig(max_new_tokens=9, seed=2, thinking_budget=0, system="Be brief.")
        r = _gemini(srv).generate([(IMG, "Which organ?")], cfg)[0]
    assert r.ok and r.text == "stub: Which organ?" and r.attempts == 2
    req = srv.requests[-1]
    assert req["path"].endswith("/models/gemini-2.5-flash:generateContent") and req["auth_present"]
    body = req["json"]
    gen = body["generationConfig"]
    assert gen["temperature"] == 0 and gen["seed"] == 2 and gen["maxOutputTokens"] == 9
    thinking = gen.get("thinkingConfig", {})
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    assert "Be brief." in str(body.get("systemInstruction", body.get("system_instruction")))
    part = body["contents"][0]["parts"][0]
    blob = part.get("inlineData") or part.get("inline_data")
    assert blob["mimeType" if "mimeType" in blob else "mime_type"] == "image/png"


def test_gemini_500_exhaustion_and_timeout_are_failures():
    with StubServer("gemini", default=StubReply(500)) as srv:
        r = _gemini(srv).generate([(IMG, "q")])[0]
    assert r.status == "error" and r.attempts == FAST.attempts and len(srv.requests) == FAST.attempts
    with StubServer("gemini", default=StubReply(200, delay=1.0)) as srv:
        r = _gemini(srv, timeout=0.2, retry=RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.01)).generate(
            [(IMG, "slow")])[0]
    assert r.status == "error" and "timeout" in r.error and r.attempts == 2


def test_gemini_blocked_and_thinking_exhausted_are_failures():
    script = [
        StubReply(200, gemini_body(None, block_reason="SAFETY")),  # blocked prompt
        StubReply(200, gemini_body(None, finish_reason="SAFETY")),  # blocked candidate
        StubReply(200, gemini_body(None, finish_reason="MAX_TOKENS", thoughts_tokens=64)),  # thinking ate the budget
        StubReply(200, gemini_body("cut ans", finish_reason="MAX_TOKENS")),
    ]
    with StubServer("gemini", script=script) as srv:
        out = _gemini(srv, concurrency=1).generate([(IMG, f"q{i}") for i in range(4)], GenerationConfig(max_new_tokens=64))
    assert [r.status for r in out] == ["blocked", "blocked", "empty", "truncated"]
    assert out[0].block_reason == "SAFETY" and out[0].finish_reason == "blocked"
    assert out[2].finish_reason == "length" and out[2].extra["thoughts_token_count"] == 64
    assert "thinking used 64 tokens" in out[2].error and out[2].text == ""
    s = summarize_responses(out)
    assert s["failed"] == 3 and s["blocked"] == 2 and s["empty"] == 1 and s["n"] == 4


# ---------------------------------------------------------------------------------------------- keys
def test_keys_only_from_environment(monkeypatch):
    with StubServer("openai") as srv:
        with pytest.raises(TypeError, match="environment only"):
            create_vlm("openai", "m", base_url=srv.url, api_key="sk-x")
        monkeypatch.delenv("OPENAI_API_KEY")
        with pytest.raises(ValueError, match="OPENAI_API_KEY"):
            create_vlm("openai", "m", base_url=srv.url)
        monkeypatch.setenv("MY_KEY", "k")
        assert create_vlm("openai", "m", base_url=srv.url, api_key_env="MY_KEY").generate([(IMG, "q")])[0].ok
    with pytest.raises(TypeError, match="environment only"):
        create_vlm("gemini", api_key="x")
