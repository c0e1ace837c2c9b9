"""Throughput of the segmentation adapters and the cost of FGSM/PGD, with segment-anything as the reference.

For every adapter (tiny in-process configs, and the real ViT-B architectures with random weights) on demo
images (256 x 256):

* images/s of ``predict`` at batch 1 and at ``--batch`` (batched inference);
* the wall time of FGSM and of PGD (level 1 = 3 steps; ``--pgd-level`` to change) divided by the time of one clean
  forward of the same batch;
* reference: the original ``segment-anything`` implementation on the same weights (SAM path: batched image
  encoder + its one-image-at-a-time decoder), images/s at the same batch sizes.

Default CPU run stays around 3 minutes: ViT-B rows use a batch of 2 and a single timed repeat; the 1024-px
ViT-B rows (seconds per image on a CPU) skip the warm-up call and the attacks unless ``--vitb-attacks``
(then PGD runs ``--vitb-pgd-steps``, default 1, steps). On a GPU every row runs the full level.
LiteMedSAM (``--lite``, or ``--lite-only`` for just its table; real bundled weights, 256 px) gets its own table,
each row measured in a fresh child process so that its peak memory (RSS on CPU, ``max_memory_allocated`` on
CUDA) is its own: ``predict`` at batch 1 and ``--lite-batch`` (8), the same batch split over 2 processes of 1
thread each against 1 process of 2 threads, and FGSM / PGD-10 (level 4, ε = 8/255) on ``--lite-attack-batch``
images (2 on CPU, 8 on GPU) as a multiple of one clean forward of that batch. On CUDA also bf16 autocast and
batch 32.

Run::

    python benchmarks/segmenter_bench.py                 # CPU
    python benchmarks/segmenter_bench.py --lite-only     # CPU, LiteMedSAM table only
    python benchmarks/segmenter_bench.py --device cuda   # GPU, real-size numbers
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from medfm_hf.attacks import ATTACK_LEVELS, fgsm, pgd
from medfm_hf.models import create_segmenter, to_model_input


def demo_batch(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` demo test images as RGB (grey replicated), their boxes and masks."""
    from medfm_hf.sources.demo import load_demo

    recs = load_demo(split="test")
    recs = [recs[i % len(recs)] for i in range(n)]
    x = torch.cat([to_model_input([r.image]).expand(-1, 3, -1, -1) for r in recs]).to(device)
    boxes = torch.tensor([r.bbox for r in recs], dtype=torch.float32, device=device)
    masks = torch.from_numpy(np.stack([r.mask for r in recs])).float().to(device)
    return x, boxes, masks


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def reference_sam(model, device: str):
    """segment-anything ``Sam`` holding the same weights as our SAM adapter, and its box-prompted forward."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    vc = model.model.config.vision_config
    dc = model.model.config.mask_decoder_config
    s, grid = vc.image_size, vc.image_size // vc.patch_size
    ref = Sam(
        ImageEncoderViT(
            img_size=s, patch_size=vc.patch_size, embed_dim=vc.hidden_size, depth=vc.num_hidden_layers,
            num_heads=vc.num_attention_heads, mlp_ratio=vc.mlp_dim / vc.hidden_size, out_chans=vc.output_channels,
            qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=vc.window_size, global_attn_indexes=tuple(vc.global_attn_indexes),
        ),
        PromptEncoder(embed_dim=dc.hidden_size, image_embedding_size=(grid, grid), input_image_size=(s, s), mask_in_chans=16),
        MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=dc.hidden_size, mlp_dim=dc.mlp_dim, num_heads=8),
            transformer_dim=dc.hidden_size, iou_head_depth=3, iou_head_hidden_dim=dc.iou_head_hidden_dim,
        ),
    )
    ref.load_state_dict(model.original_state_dict(), strict=True)
    ref = ref.to(device).eval()
    from medfm_hf.models.sam import sam_preprocess

    @torch.no_grad()
    def forward(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        H, W = images.shape[-2:]
        x, (h, w) = sam_preprocess(images, s)
        emb = ref.image_encoder(x)
        scale = torch.tensor([w / W, h / H, w / W, h / H], device=boxes.device)
        outs = []
        for i in range(images.shape[0]):  # segment-anything's decoder takes one image at a time
            sparse, dense = ref.prompt_encoder(points=None, boxes=boxes[i : i + 1] * scale, masks=None)
            low, _ = ref.mask_decoder(emb[i : i + 1], ref.prompt_encoder.get_dense_pe(), sparse, dense, False)
            outs.append(torch.sigmoid(ref.postprocess_masks(low, (h, w), (H, W))))
        return torch.cat(outs)[:, 0]

    return forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the batched rows (tiny models)")
    ap.add_argument("--vitb-batch", type=int, default=None, help="batch of the ViT-B rows (default 2 on CPU, 8 on GPU)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats for tiny models (median)")
    ap.add_argument("--pgd-level", type=int, default=1, choices=sorted(ATTACK_LEVELS))
    ap.add_argument("--vitb-pgd-steps", type=int, default=None,
                    help="PGD steps for ViT-B rows (default 1 on CPU, the level's steps on GPU)")
    ap.add_argument("--skip-vitb", action="store_true", help="tiny configs only")
    ap.add_argument("--vitb-attacks", action="store_true",
                    help="also time attacks on the 1024-px ViT-B rows (default on GPU; minutes on a CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--lite", action="store_true", help="also the LiteMedSAM table")
    ap.add_argument("--lite-only", action="store_true", help="only the LiteMedSAM table")
    ap.add_argument("--lite-batch", type=int, default=8, help="LiteMedSAM batched rows")
    ap.add_argument("--lite-attack-batch", type=int, default=None, help="LiteMedSAM attack rows (2 CPU, 8 GPU)")
    ap.add_argument("--lite-row", default=None, help=argparse.SUPPRESS)  # child process: one measurement
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lite_row:
        print(json.dumps(lite_row(json.loads(args.lite_row))))
        return
    if args.lite_only:
        lite_table(args)
        return
    dev = args.device
    gpu = dev.startswith("cuda")
    eps, level_steps = ATTACK_LEVELS[args.pgd_level]

    configs = [
        ("medsam", "tiny", dict(size="tiny"), False),
        ("sam", "tiny", dict(size="tiny"), False),
        ("sam_med2d", "tiny", dict(size="tiny"), False),
        ("grabcut", "-", {}, False),
    ]
    if not args.skip_vitb:
        configs += [
            ("medsam", "vit_b/1024", dict(size="vit_b"), True),
            ("sam", "vit_b/1024", dict(size="vit_b"), True),
            ("sam_med2d", "vit_b/256", dict(size="vit_b"), True),
        ]
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} images=demo 256x256")
    header = (f"{'model':<10} {'config':<11} {'img/s b=1':>10} {'img/s b=N':>10} {'N':>3} {'ref img/s b=1':>14} "
              f"{'ref img/s b=N':>14} {'FGSM/fwd':>9} {'PGD/fwd':>8} {'PGD steps':>9}")
    print(header)
    print("-" * len(header))
    for name, label, kw, big in configs:
        batch = (args.vitb_batch or (8 if gpu else 2)) if big else args.batch
        slow = big and not gpu and label.endswith("1024")  # a 1024-px ViT-B on a CPU: seconds per image
        reps = 1 if (big and not gpu) else args.repeats
        steps = (args.vitb_pgd_steps or (level_steps if gpu else 1)) if big else level_steps
        attacks = not slow or args.vitb_attacks
        row, diff = bench_one(name, label, kw, batch=batch, reps=reps, steps=steps, eps=eps, device=dev,
                              warmup=not slow, attacks=attacks)
        print(row, flush=True)
        if diff is not None:
            print(f"{'':<22}(max |ours - segment-anything| on this batch: {diff:.2e})", flush=True)
        if gpu:
            torch.cuda.empty_cache()
    if args.lite:
        lite_table(args)


# --- LiteMedSAM ---------------------------------------------------------------------------------------------


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def lite_row(spec: dict) -> dict:
    """One LiteMedSAM measurement in this (fresh) process: ``{"seconds", "clean_seconds", "peak_mb"}``.

    ``spec``: ``kind`` (predict, fgsm, pgd), ``batch``, ``offset`` (first demo image), ``device``, ``reps``,
    ``bf16``, ``threads``.
    """
    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = create_segmenter("medsam_lite", device=device)
    n, off = spec["batch"], spec.get("offset", 0)
    x, boxes, masks = demo_batch(n + off, device)
    x, boxes, masks = x[off:], boxes[off:], masks[off:]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if spec.get("bf16") else torch.no_grad
    model.predict(x[:1], boxes[:1])  # warm-up

    def clean():
        with ctx():
            model.predict(x, boxes)

    if spec.get("barrier"):  # several processes: start timing together (the parent creates `go`)
        open(os.path.join(spec["barrier"], f"ready{off}"), "w").close()
        while not os.path.exists(os.path.join(spec["barrier"], "go")):
            time.sleep(0.05)
    reps = spec.get("reps", 1)
    c0 = time.process_time()
    tc = timed(clean, device, reps)
    cpu = (time.process_time() - c0) / reps
    eps, _ = ATTACK_LEVELS[4]
    if spec["kind"] == "predict":
        t = tc
    elif spec["kind"] == "fgsm":
        c0 = time.process_time()
        t = timed(lambda: fgsm(model, x, boxes, masks, eps), device, reps)
        cpu = (time.process_time() - c0) / reps
    else:
        gen = torch.Generator().manual_seed(0)
        c0 = time.process_time()
        t = timed(lambda: pgd(model, x, boxes, masks, eps, 10, generator=gen), device, 1)
        cpu = time.process_time() - c0
    return {"seconds": t, "clean_seconds": tc, "cpu_seconds": cpu, "peak_mb": _peak_mb(device)}


def _child(spec: dict, threads: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), "--lite-row", json.dumps(spec)]
    if threads:
        cmd += ["--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"LiteMedSAM benchmark child failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def lite_table(args) -> None:
    """The LiteMedSAM table (module docstring)."""
    dev = args.device
    gpu = dev.startswith("cuda")
    nb, na = args.lite_batch, args.lite_attack_batch or (8 if gpu else 2)
    threads = args.threads or torch.get_num_threads()
    reps = 3 if gpu else 1
    print(f"\nLiteMedSAM (bundled weights, 256 px input, demo images 256x256) device={dev} torch={torch.__version__} "
          f"threads/process={threads}")
    header = (f"{'row':<34} {'batch':>5} {'procs':>5} {'samples/s':>10} {'s/sample':>9} {'CPU s/sample':>12} "
              f"{'x clean fwd':>11} {'peak MB':>8}")
    print(header)
    print("-" * len(header))

    def show(label, batch, procs, seconds, clean_seconds, peak, cpu):
        ratio = f"{seconds / clean_seconds:>11.1f}" if clean_seconds else f"{'-':>11}"
        print(f"{label:<34} {batch:>5} {procs:>5} {batch / seconds:>10.2f} {seconds / batch:>9.3f} "
              f"{cpu / batch:>12.3f} {ratio} {peak:>8.0f}", flush=True)

    base = {"device": dev, "reps": reps}
    for b in [1, nb] + ([32] if gpu else []):
        r = _result(_child({**base, "kind": "predict", "batch": b}, threads))
        show("predict fp32", b, 1, r["seconds"], None, r["peak_mb"], r["cpu_seconds"])
    if gpu:
        for b in (1, nb, 32):
            r = _result(_child({**base, "kind": "predict", "batch": b, "bf16": True}))
            show("predict bf16 autocast", b, 1, r["seconds"], None, r["peak_mb"], r["cpu_seconds"])
    else:  # the same batch split over two single-thread processes (what `accelerate launch` with 2 CPU procs does)
        import tempfile

        half = nb // 2
        with tempfile.TemporaryDirectory() as barrier:
            procs = [_child({**base, "kind": "predict", "batch": half, "offset": i * half, "threads": 1,
                             "barrier": barrier}, 1) for i in range(2)]
            while not all(os.path.exists(os.path.join(barrier, f"ready{i * half}")) for i in range(2)):
                if any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.05)
            open(os.path.join(barrier, "go"), "w").close()
            res = [_result(p) for p in procs]
        wall = max(r["seconds"] for r in res)
        show("predict, 2 procs x 1 thread", nb, 2, wall, None, max(r["peak_mb"] for r in res),
             sum(r["cpu_seconds"] for r in res))
        r = _result(_child({**base, "kind": "predict", "batch": nb, "threads": 1}, 1))
        show("predict, 1 proc x 1 thread", nb, 1, r["seconds"], None, r["peak_mb"], r["cpu_seconds"])
    for kind, label in (("fgsm", "FGSM (1 step, eps 8/255)"), ("pgd", "PGD-10 (eps 8/255)")):
        r = _result(_child({**base, "kind": kind, "batch": na}, threads))
        show(label, na, 1, r["seconds"], r["clean_seconds"], r["peak_mb"], r["cpu_seconds"])


def bench_one(
    name: str, label: str, kw: dict, *, batch: int, reps: int, steps: int, eps: float, device: str,
    warmup: bool = True, attacks: bool = True,
) -> tuple[str, float | None]:
    """One table row: throughput at batch 1 and ``batch``, the reference's, and attack cost / clean forward."""
    model = create_segmenter(name, device=device, **kw)
    x, boxes, masks = demo_batch(batch, device)
    if warmup:
        model.predict(x[:1], boxes[:1])  # warm-up (allocations, kernel selection)
    t1 = timed(lambda: model.predict(x[:1], boxes[:1]), device, reps)
    tn = timed(lambda: model.predict(x, boxes), device, reps)
    row = f"{name:<10} {label:<11} {1 / t1:>10.2f} {batch / tn:>10.2f} {batch:>3} "
    diff = None
    if name == "sam":
        ref = reference_sam(model, device)
        if warmup:
            ref(x[:1], boxes[:1])
        r1 = timed(lambda: ref(x[:1], boxes[:1]), device, reps)
        rn = timed(lambda: ref(x, boxes), device, reps)
        diff = float((ref(x, boxes) - model.predict(x, boxes)).abs().max())
        row += f"{1 / r1:>14.2f} {batch / rn:>14.2f} "
    else:
        row += f"{'-':>14} {'-':>14} "
    if model.differentiable and attacks:
        gen = torch.Generator().manual_seed(0)
        tf = timed(lambda: fgsm(model, x, boxes, masks, eps), device, reps)
        tp = timed(lambda: pgd(model, x, boxes, masks, eps, steps, generator=gen), device, 1)
        row += f"{tf / tn:>9.1f} {tp / tn:>8.1f} {steps:>9}"
    elif model.differentiable:
        row += f"{'skipped':>9} {'skipped':>8} {'-':>9}"
    else:
        row += f"{'n/a':>9} {'n/a':>8} {'-':>9}"
    return row, diff

if __name__ == "__main__":
    main()
