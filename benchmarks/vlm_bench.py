"""Throughput of the vision-language generation engine and the API clients.

Three tables, each with a reference measured in the same run:

1. **Local engine** (tiny random MedGemma / LLaVA-Med built in-process): samples/s and generated
   tokens/s at batch 1 and batch ``--batch`` (best of 2); *reference* = bare ``model.generate`` on the
   same batches encoded beforehand (the gap is preprocessing + decoding), and the share of answers
   identical between batch 1 and batch N (left padding must make it 100 %).
2. **API clients** against a loopback stub that answers after ``--latency`` seconds: requests/s at
   concurrency 1 and ``--concurrency``; *reference* = the ideal ``concurrency / latency``.
3. ``--gemma4b`` (needs a GPU for real numbers): a Gemma 3 4B-config model (MedGemma-sized, random
   weights) in bf16 at batch 1/8/16, hand-built inputs (256 image tokens, 896 px), tokens/s and peak memory.
   ``--gemma4b --smoke`` shrinks it to one layer so the code path can be checked on a CPU.

Run::

    python benchmarks/vlm_bench.py                       # CPU: tables 1 and 2 (about a minute)
    python benchmarks/vlm_bench.py --gemma4b --device cuda
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import torch

from medfm_hf.vlm import GenerationConfig, create_vlm, summarize_responses
from medfm_hf.vlm.api import RetryPolicy
from medfm_hf.vlm.stubs import StubReply, StubServer


def _inputs(n: int, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    return [((rng.random((64 + 7 * (i % 5), 80, 3)) * 255).astype(np.uint8),
             "Which organ is shown? Answer in one word." + " Please." * (i % 4)) for i in range(n)]


def bench_local(n: int, batch: int, max_new: int, device: str, repeats: int = 2) -> list[dict]:
    rows = []
    cfg = GenerationConfig(max_new_tokens=max_new)
    data = _inputs(n)
    for name in ("medgemma", "llava_med"):
        vlm = create_vlm(name, size="tiny", device=device)
        vlm.generate(data[:2], cfg)  # warm-up
        answers = {}
        for bs in (1, batch):
            v = vlm.with_options(batch_size=bs)
            dt = bare = float("inf")
            queries = [v.make_query(*x) for x in data]
            encoded = [v.encode(queries[i:i + bs], cfg) for i in range(0, n, bs)]
            for _ in range(repeats):  # best of `repeats`: the machine may be shared
                t0 = time.perf_counter()
                out = v.generate(data, cfg)
                dt = min(dt, time.perf_counter() - t0)
                # Reference: the same batches, already encoded, through bare model.generate.
                t1 = time.perf_counter()
                with torch.inference_mode():
                    for enc in encoded:
                        v.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                         eos_token_id=v.eos_token_ids(), pad_token_id=v.tokenizer.pad_token_id)
                bare = min(bare, time.perf_counter() - t1)
            s = summarize_responses(out)
            answers[bs] = [r.raw_text for r in out]
            rows.append({"model": name, "batch": bs, "samples/s": n / dt, "tokens/s": s["tokens_out"] / dt,
                         "generate-only samples/s": n / bare, "truncated": s["truncated"]})
        same = np.mean([a == b for a, b in zip(answers[1], answers[batch])])
        for r in rows[-2:]:
            r["same answers as batch 1"] = f"{100 * same:.0f}%"
    return rows


def bench_api(n: int, concurrency: int, latency: float) -> list[dict]:
    os.environ.setdefault("OPENAI_API_KEY", "bench-dummy")
    os.environ.setdefault("GEMINI_API_KEY", "bench-dummy")
    rows = []
    data = _inputs(n)
    for kind in ("openai", "gemini"):
        for c in (1, concurrency):
            with StubServer(kind, default=StubReply(200, delay=latency), max_requests=10 * n) as srv:
                vlm = create_vlm(kind, "stub", base_url=srv.url, concurrency=c, retry=RetryPolicy(attempts=1))
                vlm.generate(data[:1])  # warm-up (client creation, connection)
                t0 = time.perf_counter()
                out = vlm.generate(data)
                dt = time.perf_counter() - t0
            s = summarize_responses(out)
            rows.append({"client": kind, "concurrency": c, "requests/s": n / dt, "ideal requests/s": c / latency,
                         "failed": s["failed"], "max in flight": srv.max_in_flight})
    return rows


def gemma4b_config(smoke: bool):
    """Gemma 3 4B (MedGemma 4B) dimensions; ``smoke`` keeps the widths but one layer each, 224 px."""
    from transformers import Gemma3Config

    text = dict(vocab_size=262_208, hidden_size=2560, intermediate_size=10_240, num_hidden_layers=34,
                num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                sliding_window=1024, rope_parameters=None)
    vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                  image_size=896, patch_size=14)
    if smoke:
        text.update(num_hidden_layers=2, vocab_size=4096)
        vision.update(num_hidden_layers=1, image_size=224)
    text["layer_types"] = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                           for i in range(text["num_hidden_layers"])]
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=256 if not smoke else 64,
                        boi_token_index=255_999 if not smoke else 4000, eoi_token_index=256_000 if not smoke else 4001,
                        image_token_index=262_144 if not smoke else 4002)


def bench_gemma4b(device: str, batches: list[int], max_new: int, smoke: bool) -> list[dict]:
    from transformers import Gemma3ForConditionalGeneration

    cfg = gemma4b_config(smoke)
    dtype = torch.bfloat16
    with torch.device(device):
        model = Gemma3ForConditionalGeneration(cfg).to(dtype).eval()
    n_img = cfg.mm_tokens_per_image
    size = cfg.vision_config.image_size
    rows = []
    for bs in batches:
        g = torch.Generator().manual_seed(bs)
        text_len = 40
        ids = torch.randint(10, 3000, (bs, text_len), generator=g)
        img = torch.cat([torch.tensor([cfg.boi_token_index]), torch.full((n_img,), cfg.image_token_index),
                         torch.tensor([cfg.eoi_token_index])])
        input_ids = torch.cat([torch.full((bs, 1), 2), img.expand(bs, -1), ids], dim=1).to(device)
        tt = (input_ids == cfg.image_token_index).long()
        pix = torch.randn(bs, 3, size, size, generator=g).to(device=device, dtype=dtype)
        inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), token_type_ids=tt,
                      pixel_values=pix)
        kw = dict(max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False, pad_token_id=0)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=0)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(**inputs, **kw)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        new = out.shape[1] - input_ids.shape[1]
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
        rows.append({"model": "gemma3-4b-config" + (" (smoke)" if smoke else ""), "batch": bs,
                     "samples/s": bs / dt, "tokens/s": bs * new / dt, "prompt tokens": input_ids.shape[1],
                     "peak GiB": peak})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = [f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for r in rows for k in keys]
    cells = [fmt[i * len(keys):(i + 1) * len(keys)] for i in range(len(rows))]
    widths = [max(len(k), *(len(c[j]) for c in cells)) for j, k in enumerate(keys)]
    line = "| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join([line, sep, *body])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=24, help="samples per measurement")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency", type=float, default=0.05, help="stub answer delay, seconds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--gemma4b", action="store_true", help="also the 4B-config Gemma 3 at batch 1/8/16")
    p.add_argument("--smoke", action="store_true", help="with --gemma4b: one-layer version for a CPU check")
    p.add_argument("--skip-local", action="store_true")
    p.add_argument("--skip-api", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    if not args.skip_local:
        print(f"\n## Local engine (tiny random models, {args.n} samples, max_new_tokens={args.max_new_tokens})\n")
        print(_table(bench_local(args.n, args.batch, args.max_new_tokens, args.device)))
    if not args.skip_api:
        print(f"\n## API clients vs loopback stub ({args.n} requests, stub latency {args.latency * 1000:.0f} ms)\n")
        print(_table(bench_api(args.n, args.concurrency, args.latency)))
    if args.gemma4b:
        print("\n## Gemma 3 4B config (MedGemma-sized, random weights, bf16)\n")
        batches = [1, 2] if args.smoke else [1, 8, 16]
        print(_table(bench_gemma4b(args.device, batches, 4 if args.smoke else 32, args.smoke)))


if __name__ == "__main__":
    main()
