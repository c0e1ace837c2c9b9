"""The response cache (reruns never pay twice, keyed on everything that changes an answer, safe under
several processes) and the key-safety check (a dummy key never reaches any output file or log)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from medfm_hf.vlm import GenerationConfig, ResponseCache, create_vlm
from medfm_hf.vlm.api import RetryPolicy
from medfm_hf.vlm.stubs import StubReply, StubServer

FAST = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.01)
IMGS = [(np.random.default_rng(i).random((10, 14, 3)) * 255).astype(np.uint8) for i in range(3)]


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-dummy")


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_rerun_is_served_from_cache(tmp_path, kind):
    inputs = [(im, f"q{i}") for i, im in enumerate(IMGS)]
    cfg = GenerationConfig(max_new_tokens=8)
    with StubServer(kind) as srv:
        vlm = create_vlm(kind, "m", base_url=srv.url, retry=FAST, cache=tmp_path / "results")
        first = vlm.generate(inputs, cfg)
        assert len(srv.requests) == 3 and not any(r.cached for r in first)
        # A new client (a resumed run) with the same cache: no request at all.
        again = create_vlm(kind, "m", base_url=srv.url, retry=FAST, cache=tmp_path / "results").generate(inputs, cfg)
        assert len(srv.requests) == 3
        assert all(r.cached and r.seconds == 0 for r in again)
        assert [r.text for r in again] == [r.text for r in first]
        # Anything that changes the answer is a miss: settings, prompt, image pixels, model name.
        vlm.generate(inputs[:1], GenerationConfig(max_new_tokens=8, seed=1))
        vlm.generate([(IMGS[0], "q0 ")], cfg)
        changed = IMGS[0].copy()
        changed[0, 0, 0] ^= 1
        vlm.generate([(changed, "q0")], cfg)
        create_vlm(kind, "other", base_url=srv.url, retry=FAST, cache=tmp_path / "results").generate(inputs[:1], cfg)
        assert len(srv.requests) == 7
    assert (tmp_path / "results" / "vlm_cache.sqlite").exists()


def test_failures_are_not_cached_but_blocks_are(tmp_path):
    from medfm_hf.vlm.stubs import gemini_body

    with StubServer("gemini", script=[StubReply(500), StubReply(500),
                                      StubReply(200, gemini_body(None, block_reason="SAFETY"))]) as srv:
        vlm = create_vlm("gemini", "m", base_url=srv.url, retry=FAST, cache=tmp_path / "c.sqlite")
        assert vlm.generate([(IMGS[0], "q")])[0].status == "error"
        assert len(vlm.cache) == 0
        assert vlm.generate([(IMGS[0], "q")])[0].status == "blocked"  # retried: the error was not stored
        r = vlm.generate([(IMGS[0], "q")])[0]
        assert r.status == "blocked" and r.cached and len(srv.requests) == 3


def test_local_model_cache_round_trip(tmp_path):
    vlm = create_vlm("medgemma", size="tiny", cache=tmp_path)
    cfg = GenerationConfig(max_new_tokens=3)
    first = vlm.generate([(IMGS[0], "q")], cfg)[0]
    calls = []
    vlm.model.generate = lambda **kw: calls.append(kw)  # would break if called
    second = vlm.generate([(IMGS[0], "q")], cfg)[0]
    assert not calls and second.cached and second.raw_text == first.raw_text
    assert second.tokens_out == first.tokens_out


_WRITER = """
import sys
from medfm_hf.vlm import Response, ResponseCache
cache = ResponseCache(sys.argv[1])
start, n = int(sys.argv[2]), int(sys.argv[3])
for i in range(start, start + n):  # one transaction per answer, like a live run
    cache.put(f"k{i}", Response(text=f"answer {i}", tokens_out=i))
"""


def test_cache_safe_under_several_processes(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = str(tmp_path / "shared.sqlite")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, path, str(s), "60"], env=env, cwd=root)
             for s in (0, 30, 60)]  # overlapping keys, all started before any finishes
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = ResponseCache(path)
    assert len(cache) == 120
    assert all(cache.get(f"k{i}").text == f"answer {i}" for i in range(120))


def test_dummy_key_never_written_anywhere(tmp_path, monkeypatch):
    okey, gkey = "sk-DUMMY-7f3a9c1e5b", "gm-DUMMY-2d8e4f6a0c"
    monkeypatch.setenv("OPENAI_API_KEY", okey)
    monkeypatch.setenv("GEMINI_API_KEY", gkey)
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        results = []
        for kind in ("openai", "gemini"):
            script = [StubReply(429), StubReply(500), StubReply(200)]
            with StubServer(kind, script=script) as srv:
                vlm = create_vlm(kind, "m", base_url=srv.url, retry=RetryPolicy(attempts=3, initial_delay=0.01),
                                 cache=tmp_path / "results")
                out = vlm.generate([(IMGS[0], "q"), (IMGS[1], "q")])
                with StubServer(kind, default=StubReply(401)) as bad:
                    out += create_vlm(kind, "m", base_url=bad.url, retry=FAST).generate([(IMGS[2], "q")])
                assert all(r["auth_present"] for r in srv.requests)  # the key was really sent
                logging.getLogger("test").info("model %r", vlm)
                results += [r.to_dict() for r in out]
        (tmp_path / "results" / "responses.jsonl").write_text("\n".join(json.dumps(r) for r in results))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 3 and log_file.stat().st_size > 0
    assert any(r["status"] == "error" and "401" in r["error"] for r in results)
    for f in files:
        data = f.read_bytes()
        assert okey.encode() not in data and gkey.encode() not in data, f"key leaked into {f}"
