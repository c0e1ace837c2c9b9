"""Where each strategy puts its trainable parameters, checked by training a few steps and diffing weights."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from medfm_hf.finetune.strategies import (
    STRATEGIES,
    StrategyError,
    StrategyOptions,
    apply_strategy,
    base_fingerprint,
    lora_target_modules,
    regroup_adapters,
)
from medfm_hf.finetune.train import segmentation_loss
from medfm_hf.finetune.trainer import _set_train_mode, freeze_unused
from medfm_hf.models import create_segmenter

ARCHS = {
    # transformers SamModel (MedSAM/SAM): fused attn.qkv + attn.proj in the encoder
    "medsam": dict(size="tiny", image_size=64),
    # our SAM-Med2D (segment-anything names, built-in adapters)
    "sam_med2d": dict(size="tiny", image_size=64),
}


def _model(name: str):
    return create_segmenter(name, **ARCHS[name])


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand((2, 3, 64, 64), generator=g)
    boxes = torch.tensor([[8.0, 10.0, 40.0, 44.0], [20.0, 16.0, 56.0, 50.0]])
    masks = torch.zeros((2, 64, 64))
    masks[0, 12:40, 10:38] = 1
    masks[1, 20:48, 22:54] = 1
    return images, boxes, masks


def _train(model: torch.nn.Module, steps: int = 2) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for s in range(steps):
        _set_train_mode(model)  # the trainer's mode: train(), BatchNorm kept in eval
        images, boxes, masks = _batch(s)
        loss = segmentation_loss(model(images, boxes), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if k in after and not torch.equal(before[k], after[k])}


def _group_names(model) -> dict[str, set[str]]:
    """Every name (tied aliases included) of every parameter of each group."""
    names: dict[int, set[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), set()).add(n)
    return {g: set().union(*(names[id(p)] for p in ps)) if ps else set()
            for g, ps in model.trainable_groups().items()}


def _trained_weights(name: str, strategy: str, **opts):
    """(base state, trained base-model state with LoRA merged, plan, group names)."""
    model = _model(name)
    groups = _group_names(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = apply_strategy(model, strategy, StrategyOptions(encoder_blocks=1, **opts))
    _train(plan.model)
    trained = plan.model.merge_and_unload() if strategy == "lora" else plan.model
    return before, {k: v.clone() for k, v in trained.state_dict().items()}, plan, groups


@pytest.mark.parametrize("arch", list(ARCHS))
def test_decoder_only_leaves_everything_else_bit_identical(arch):
    before, after, plan, groups = _trained_weights(arch, "decoder_only")
    changed = _changed(before, after)
    assert changed and changed <= groups["mask_decoder"]
    encoder = set().union(*(v for k, v in groups.items() if k.startswith("image_encoder")))
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert set(plan.trainable) == groups["mask_decoder"]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_decoder_prompt_adds_the_prompt_encoder(arch):
    model = _model(arch)
    groups = _group_names(model)
    plan = apply_strategy(model, "decoder_prompt")
    assert set(plan.trainable) == groups["mask_decoder"] | groups["prompt_encoder"]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_encoder_partial_touches_exactly_the_last_k_blocks(arch):
    before, after, plan, groups = _trained_weights(arch, "encoder_partial")
    changed = _changed(before, after)
    assert changed & groups["image_encoder.block1"], "the last block must train"
    for untouched in ("image_encoder.block0", "image_encoder.patch_embed"):
        assert not changed & groups[untouched], untouched
    allowed = groups["image_encoder.block1"] | groups["image_encoder.neck"] | groups["mask_decoder"] | groups[
        "prompt_encoder"]
    assert changed <= allowed
    assert plan.groups[-2:] == ["image_encoder.block1", "image_encoder.neck"]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_full_trains_encoder_and_decoder(arch):
    before, after, plan, groups = _trained_weights(arch, "full")
    changed = _changed(before, after)
    for g in ("image_encoder.patch_embed", "image_encoder.block0", "image_encoder.block1", "mask_decoder"):
        assert changed & groups[g], g
    fixed = {n for n in before if n.endswith("positional_embedding")}  # SAM's fixed Fourier features
    assert plan.trainable_params == sum(p.numel() for n, p in _model(arch).named_parameters() if n not in fixed)
    assert not changed & fixed


@pytest.mark.parametrize("arch", list(ARCHS))
def test_lora_adapts_encoder_and_decoder_attention(arch):
    before, after, plan, groups = _trained_weights(arch, "lora")
    enc = [t for t in plan.lora_targets if t + ".weight" in set().union(
        *(v for k, v in groups.items() if k.startswith("image_encoder.block")))]
    dec = [t for t in plan.lora_targets if t + ".weight" in groups["mask_decoder"]]
    # every encoder block's fused qkv and proj, and the decoder's q/k/v/out projections
    assert sorted(re.sub(r".*\.(\w+\.\w+)$", r"\1", t) for t in enc) == ["attn.proj", "attn.qkv"] * 0 + sorted(
        ["attn.proj", "attn.qkv"] * 2)
    assert {t.rsplit(".", 1)[1] for t in dec} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    # only LoRA matrices train, and after merging exactly the wrapped weights differ from the base
    assert all("lora_" in n for n in plan.trainable)
    changed = _changed(before, after)
    assert changed == {t + ".weight" for t in plan.lora_targets}
    assert any(".mlp." not in t for t in enc) and not any("mlp.lin1" in c for c in changed)


def test_lora_patterns_come_from_options_and_fail_clearly():
    model = _model("medsam")
    enc, dec = lora_target_modules(model, StrategyOptions(lora_encoder_pattern=r"attn\.qkv$", lora_targets="encoder"))
    assert enc == ["model.vision_encoder.layers.0.attn.qkv", "model.vision_encoder.layers.1.attn.qkv"] and dec == []
    with pytest.raises(StrategyError, match="matches no Linear layer"):
        lora_target_modules(model, StrategyOptions(lora_decoder_pattern=r"nothing_here$"))


def test_inserted_adapters_start_at_the_pretrained_output_and_train():
    model = _model("medsam")
    images, boxes, _ = _batch()
    ref = model.predict(images, boxes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = apply_strategy(model, "adapter")
    assert len(plan.adapter_blocks) == 2 and plan.adapter_width == 16
    assert (model.predict(images, boxes) - ref).abs().max().item() < 1e-6
    groups = _group_names(model)
    assert groups["adapters"] == set()  # the model does not know them: the strategy regroups them
    model.trainable_groups = lambda: regroup_adapters(model, type(model).trainable_groups(model))
    groups = _group_names(model)
    assert set(plan.trainable) == groups["adapters"] | groups["mask_decoder"]
    assert all(".ft_adapter." in n for n in groups["adapters"])
    assert not any(".ft_adapter." in n for g, v in groups.items() if g != "adapters" for n in v)
    _train(model)
    after = model.state_dict()
    changed = _changed(before, after)
    assert changed <= groups["mask_decoder"]  # every pretrained encoder weight bit-identical
    assert any(not torch.equal(after[n], torch.zeros_like(after[n])) for n in groups["adapters"] if ".up." in n)


def test_sam_med2d_adapter_strategy_uses_its_own_adapters():
    model = _model("sam_med2d")
    groups = _group_names(model)
    plan = apply_strategy(model, "adapter")
    assert plan.adapter_blocks == []
    assert set(plan.trainable) == groups["adapters"] | groups["mask_decoder"]
    assert all(".Adapter." in n for n in groups["adapters"])


def test_unused_parameters_with_box_prompts_are_found_and_frozen():
    model = _model("medsam")
    plan = apply_strategy(model, "decoder_prompt")
    images, boxes, masks = _batch()
    unused = freeze_unused(plan.model, {"image": images, "box": boxes, "mask": masks}, segmentation_loss, "cpu")
    assert any("iou_prediction_head" in n for n in unused)
    assert any("prompt_encoder.mask_embed" in n for n in unused)
    assert not any("output_hypernetworks" in n for n in unused)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in unused)


def test_unknown_strategy_and_weightless_model_fail_clearly():
    with pytest.raises(StrategyError, match="choose one of"):
        apply_strategy(_model("medsam"), "bitfit")
    with pytest.raises(StrategyError, match="no trainable parameters"):
        apply_strategy(create_segmenter("grabcut"), "full")
    assert STRATEGIES == ("full", "decoder_only", "decoder_prompt", "encoder_partial", "lora", "adapter")


def test_fingerprint_identifies_the_weights():
    a, b = _model("medsam"), _model("medsam")
    assert base_fingerprint(a) == base_fingerprint(b)
    c = copy.deepcopy(a)
    with torch.no_grad():
        next(c.parameters()).view(-1)[0] += 1e-3
    assert base_fingerprint(c) != base_fingerprint(a)


# --- LiteMedSAM (the real bundled weights; TinyViT stages are its encoder blocks) -------------------------


@pytest.fixture(scope="module")
def lite():
    return create_segmenter("medsam_lite")


def _lite_batch():
    images, boxes, masks = _batch()
    return images, boxes, masks


def test_lite_strategies_resolve_through_its_groups(lite):
    groups = _group_names(lite)
    enc, dec = lora_target_modules(lite, StrategyOptions())
    # attention of every TinyViT attention block (stages 1-3: 2 + 6 + 2 blocks), none in the MBConv stage 0
    assert len(enc) == 2 * 10 and all(t.endswith(("attn.qkv", "attn.proj")) for t in enc)
    assert not any(t.startswith("image_encoder.layers.0.") for t in enc)
    assert {t.rsplit(".", 1)[1] for t in dec} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    plan = apply_strategy(copy.deepcopy(lite), "encoder_partial", StrategyOptions(encoder_blocks=1))
    assert set(plan.trainable) == (groups["image_encoder.stage3"] | groups["image_encoder.neck"]
                                   | groups["mask_decoder"] | groups["prompt_encoder"])


def test_lite_adapters_start_at_the_pretrained_output(lite):
    model = copy.deepcopy(lite)
    images, boxes, _ = _lite_batch()
    ref = model.predict(images, boxes)
    plan = apply_strategy(model, "adapter")
    assert len(plan.adapter_blocks) == 10  # one beside every TinyViT attention block's MLP
    assert (model.predict(images, boxes) - ref).abs().max().item() < 1e-6


def test_lite_decoder_only_step_keeps_the_encoder_bit_identical(lite):
    model = copy.deepcopy(lite)
    groups = _group_names(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_strategy(model, "decoder_only")
    _train(model, steps=1)
    changed = _changed(before, model.state_dict())
    assert changed and changed <= groups["mask_decoder"]
    # BatchNorm running statistics of the encoder are buffers: untouched too
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("image_encoder."))
