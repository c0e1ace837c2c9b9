"""LoRA grounding fine-tuning step on a MedGemma-4B-sized Gemma 3 (random weights, bf16): step time, tokens/s,
peak memory, with and without gradient checkpointing.

    python benchmarks/vlm_lora_bench.py --device cuda            # the 4B config (needs a GPU, ~10 GiB)
    python benchmarks/vlm_lora_bench.py --smoke                  # 2-layer version: checks the code path on CPU

Each row runs ``--steps`` optimizer steps (after one warm-up step) of the loop's own pieces: LoRA placed by
:func:`medfm_hf.finetune.vlm_grounding.apply_vlm_lora` (language model only, r = 8 by default), the
answer-only loss :func:`~medfm_hf.finetune.vlm_grounding.answer_loss_sum`, AdamW on the LoRA weights. A
sample is one 896 px image (256 image tokens) + 40 prompt tokens + 20 answer tokens, as a grounding sample.
Reference in the same run: the first step's loss must equal transformers' own label loss on the same batch
(relative 1e-2 in bf16), and the vision tower must be bit-identical after the steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import torch


def _gemma4b_config(smoke: bool):
    spec = importlib.util.spec_from_file_location("vlm_bench", os.path.join(os.path.dirname(__file__), "vlm_bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.gemma4b_config(smoke)


def make_batch(cfg, bs: int, device: str, dtype, answer_len: int = 20, prompt_len: int = 40) -> dict:
    g = torch.Generator().manual_seed(bs)
    n_img = cfg.mm_tokens_per_image
    img = torch.cat([torch.tensor([cfg.boi_token_index]), torch.full((n_img,), cfg.image_token_index),
                     torch.tensor([cfg.eoi_token_index])])
    prompt = torch.randint(10, 3000, (bs, prompt_len), generator=g)
    answer = torch.randint(10, 3000, (bs, answer_len), generator=g)
    ids = torch.cat([torch.full((bs, 1), 2), img.expand(bs, -1), prompt, answer], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -answer_len:] = answer
    size = cfg.vision_config.image_size
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "token_type_ids": (ids == cfg.image_token_index).long().to(device),
            "pixel_values": torch.randn(bs, 3, size, size, generator=g).to(device=device, dtype=dtype),
            "labels": labels.to(device)}


def bench(device: str, smoke: bool, batch: int, steps: int, checkpointing: bool, rank: int) -> dict:
    from transformers import Gemma3ForConditionalGeneration

    from medfm_hf.finetune.args import FinetuneArguments
    from medfm_hf.finetune.vlm_args import VLMGroundingArguments
    from medfm_hf.finetune.vlm_grounding import answer_loss_sum, apply_vlm_lora

    cfg = _gemma4b_config(smoke)
    dtype = torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3ForConditionalGeneration(cfg).to(dtype)
    vision0 = {n: p.detach().clone() for n, p in model.named_parameters() if "vision_tower" in n}
    args = FinetuneArguments(model="medgemma", strategy="lora", lora_rank=rank, lora_alpha=2.0 * rank)
    peft_model, targets = apply_vlm_lora(model, args, VLMGroundingArguments(task="grounding"))
    for p in peft_model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # LoRA weights in fp32, base in bf16
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    b = make_batch(cfg, batch, device, dtype)
    n_tok = int((b["labels"] != -100).sum())
    peft_model.train()
    with torch.no_grad():
        ours = answer_loss_sum(peft_model, b, device, dtype) / n_tok
        ref = peft_model(**{k: v for k, v in b.items()}).loss
    if abs(float(ours) - float(ref)) > 1e-2 * abs(float(ref)):
        raise SystemExit(f"answer loss {float(ours):.5f} != transformers label loss {float(ref):.5f}")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype):
            loss = answer_loss_sum(peft_model, b, device, dtype) / n_tok
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    same = all(torch.equal(p, vision0[n.replace("base_model.model.", "", 1)])
               for n, p in peft_model.named_parameters() if "vision_tower" in n)
    if not same:
        raise SystemExit("the vision tower changed under language-model LoRA")
    seq = b["input_ids"].shape[1]
    return {"model": "gemma3-4b-config" + (" (smoke)" if smoke else ""), "batch": batch,
            "checkpointing": checkpointing, "lora modules": len(targets),
            "trainable M": sum(p.numel() for p in params) / 1e6, "s/step": dt, "tokens/s": batch * seq / dt,
            "answer tokens/s": n_tok / dt,
            "peak GiB": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan"),
            "loss vs HF": f"{float(ours):.4f} / {float(ref):.4f}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="2-layer version of the 4B config (CPU check)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rank", type=int, default=8)
    a = p.parse_args()
    rows = [bench(a.device, a.smoke, a.batch, a.steps, ck, a.rank) for ck in (False, True)]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
