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
Run::

    python benchmarks/segmenter_bench.py                 # CPU
    python benchmarks/segmenter_bench.py --device cuda   # GPU, real-size numbers
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
