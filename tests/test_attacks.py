"""FGSM / PGD: exact inference path, budget, model state, determinism, and effect on a trained tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medfm_hf.attacks import ATTACK_LEVELS, AttackError, attack, attack_spec, fgsm, pgd, segmentation_loss
from medfm_hf.models import create_segmenter, to_model_input


def _scene(n: int = 2, size: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, size, size), generator=gen)
    x[:, :, :4] = 0.0  # pixels at the range limits must stay in [0, 1]
    x[:, :, -4:] = 1.0
    boxes = torch.tensor([[8.0, 8, 40, 40], [20, 10, 60, 50]])[:n]
    masks = torch.zeros(n, size, size)
    for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        masks[i, y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = 1
    return x, boxes, masks


@pytest.mark.parametrize("name", ["medsam", "sam", "sam_med2d"])
def test_attack_path_equals_inference_path(name):
    model = create_segmenter(name, size="tiny", seed=1)
    x, boxes, masks = _scene()
    inference = model.predict(x, boxes)
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        attacked_path = model(xg, boxes)
        segmentation_loss(attacked_path, masks).backward()
    assert (attacked_path.detach() - inference).abs().max() <= 1e-5
    assert xg.grad is not None and xg.grad.abs().sum() > 0  # gradients reach the image
    # a zero budget returns the clean image itself
    assert torch.equal(fgsm(model, x, boxes, masks, 0.0), x)


def test_budget_and_range_at_every_level():
    model = create_segmenter("sam_med2d", size="tiny", seed=2)
    x, boxes, masks = _scene()
    for level, (eps, steps) in ATTACK_LEVELS.items():
        for method in ("fgsm", "pgd"):
            adv = attack(model, x, boxes, masks, method, level, generator=torch.Generator().manual_seed(level))
            delta = (adv - x).abs()
            assert adv.shape == x.shape
            assert delta.max() <= eps + 1e-6, (method, level)
            assert adv.min() >= 0 and adv.max() <= 1
            assert delta.max() > 0.5 * eps  # it moved
        assert attack_spec("pgd", level).steps == steps


def test_grey_images_stay_grey_and_batches_are_independent():
    model = create_segmenter("sam", size="tiny", seed=3)
    x, boxes, masks = _scene()
    grey = x[:, :1]
    adv = fgsm(model, grey, boxes, masks, 4 / 255)
    assert adv.shape == grey.shape
    alone = fgsm(model, grey[1:], boxes[1:], masks[1:], 4 / 255)
    # per-image losses: image 1's perturbation does not depend on image 0 (up to sign flips of ~0 gradients)
    assert (alone[0] != adv[1]).float().mean() < 0.01


def test_model_state_is_restored_and_parameters_get_no_gradient():
    model = create_segmenter("sam_med2d", size="tiny", seed=4)
    x, boxes, masks = _scene()
    model.train()
    for p in model.mask_decoder.parameters():
        p.requires_grad_(True)
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    pgd(model, x, boxes, masks, 4 / 255, 3, generator=torch.Generator().manual_seed(0))
    handle.remove()
    assert seen == [False, False, False]  # every step ran in eval mode
    assert model.training  # the caller's mode is back
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_pgd_is_seeded_and_step_rules():
    model = create_segmenter("medsam", size="tiny", seed=5)
    x, boxes, masks = _scene()
    a = pgd(model, x, boxes, masks, 4 / 255, 3, generator=torch.Generator().manual_seed(0))
    b = pgd(model, x, boxes, masks, 4 / 255, 3, generator=torch.Generator().manual_seed(0))
    c = pgd(model, x, boxes, masks, 4 / 255, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(AttackError, match="generator"):
        pgd(model, x, boxes, masks, 4 / 255, 3)
    std, ref = attack_spec("pgd", 4), attack_spec("pgd", 4, step_rule="reference")
    assert std.epsilon == ref.epsilon == 8 / 255 and std.steps == 10
    assert std.step_size == pytest.approx(2.5 * 8 / 255 / 10) and ref.step_size == pytest.approx(8 / 255 / 10)
    assert attack_spec("fgsm", 2) .step_size == 4 / 255
    with pytest.raises(AttackError, match="level"):
        attack_spec("pgd", 6)
    with pytest.raises(AttackError, match="unknown attack"):
        attack_spec("cw", 1)


def test_bad_inputs_are_refused():
    x, boxes, masks = _scene()
    with pytest.raises(AttackError, match="not differentiable"):
        fgsm(create_segmenter("grabcut"), x, boxes, masks, 2 / 255)
    model = create_segmenter("sam", size="tiny")
    with pytest.raises(AttackError, match=r"\[0, 1\]"):
        fgsm(model, x * 2, boxes, masks, 2 / 255)
    with pytest.raises(AttackError, match="masks must have shape"):
        fgsm(model, x, boxes, masks[:, :10], 2 / 255)


def _iou(probs: torch.Tensor, masks: torch.Tensor) -> float:
    p, m = probs > 0.5, masks > 0.5
    inter = (p & m).flatten(1).sum(1).float()
    union = (p | m).flatten(1).sum(1).float()
    return float(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean())


def _demo_tensors(split: str):
    from medfm_hf.sources.demo import load_demo

    recs = load_demo(split=split)
    x = torch.cat([to_model_input([r.image]).expand(-1, 3, -1, -1) for r in recs])
    boxes = torch.tensor([r.bbox for r in recs], dtype=torch.float32)
    masks = torch.from_numpy(np.stack([r.mask for r in recs])).float()
    return x, boxes, masks


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine an oversubscribed
    OpenMP pool makes them 10x slower: run this module single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained_tiny():
    """Tiny SAM-Med2D, prompt encoder + mask decoder trained for 200 Adam steps (a few seconds) on the demo
    train split over cached image embeddings, loss BCE + soft Dice on the 64x64 low-resolution masks."""
    x, boxes, masks = _demo_tensors("train")
    model = create_segmenter("sam_med2d", size="tiny", seed=0)
    with torch.no_grad():
        emb, model_boxes, _, _ = model.embed(x, boxes)
    target = F.adaptive_avg_pool2d(masks[:, None], 64)[:, 0]
    params = list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randperm(len(x), generator=gen)[:30]
        sparse, dense = model.prompt_encoder(model_boxes[idx])
        low, iou = model.mask_decoder(emb[idx], model.prompt_encoder.dense_pe(), sparse, dense, True)
        prob = torch.sigmoid(low[torch.arange(len(idx)), iou.argmax(1)])
        y = target[idx]
        dice = 1 - (2 * (prob * y).sum((1, 2)) + 1) / ((prob + y).sum((1, 2)) + 1)
        loss = F.binary_cross_entropy(prob, y) + dice.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in params:
        p.requires_grad_(False)
    return model.eval()


def test_stronger_attacks_lower_iou_more(trained_tiny):
    x, boxes, masks = _demo_tensors("test")
    clean = _iou(trained_tiny.predict(x, boxes), masks)
    assert clean > 0.1  # the model learned something
    results = {}
    for level in ATTACK_LEVELS:
        for method in ("fgsm", "pgd"):
            adv = attack(trained_tiny, x, boxes, masks, method, level, generator=torch.Generator().manual_seed(level))
            results[method, level] = _iou(trained_tiny.predict(adv, boxes), masks)
    print("clean IoU", round(clean, 4), {k: round(v, 4) for k, v in results.items()})
    for level in ATTACK_LEVELS:
        assert results["pgd", level] <= results["fgsm", level] < clean, level
    for method in ("fgsm", "pgd"):
        for level in range(1, 5):
            assert results[method, level + 1] < results[method, level], (method, level)
