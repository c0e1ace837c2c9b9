"""Grounding training data: answer-only loss mask, box targets in the family convention, geometry-moved boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm_hf.finetune.vlm_data import (
    IGNORE_INDEX,
    GroundingExample,
    GroundingSplit,
    answer_suffix,
    encode_training_batch,
    format_box,
    grounding_prompt,
    image_token_ids,
    read_grounding_split,
)
from medfm_hf.finetune.vlm_grounding import answer_loss_sum
from medfm_hf.vlm import GenerationConfig, create_vlm
from medfm_hf.vlm.base import XYXY_NORM, XYXY_NORM_PADDED, YXYX_1000, BoxConvention


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=["medgemma", "llava_med", "hf"])
def vlm(request):
    return create_vlm(request.param, size="tiny")


def _example(vlm, box, size=(60, 40), seed=0):
    img = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    prompt = vlm.grounding_prompt("Locate the lesion in the image.")
    return GroundingExample(0, "demo/x", img, prompt, box, format_box(box, vlm.box_convention, size))


def test_loss_mask_covers_only_the_answer_on_a_hand_built_batch(vlm):
    tok = vlm.tokenizer
    short = _example(vlm, [10, 5, 30, 20])
    long = _example(vlm, [1, 2, 59, 39], seed=1)
    long.answer = long.answer + " " + long.answer  # a longer answer: the other row gets right padding
    batch = encode_training_batch(vlm, [short, long])
    suffix = answer_suffix(vlm)
    assert suffix == ("</s>" if vlm.family == "llava_med" else "<end_of_turn>")  # hf: tiny Gemma 3, chat template
    lead = " " if vlm.family == "llava_med" else ""
    # the prompt is exactly what inference encodes for the same query (left-padded there, one row here)
    inf = vlm.encode([vlm.make_query(short.image, short.prompt)], GenerationConfig())
    n_prompt = inf["input_ids"].shape[1]
    for r, ex in enumerate((short, long)):
        ids, labels, att = batch["input_ids"][r], batch["labels"][r], batch["attention_mask"][r]
        answer_ids = tok(lead + ex.answer + suffix, add_special_tokens=False)["input_ids"]
        n = int(att.sum())
        # hand-built expectation: -100 on the prompt (image tokens included), the answer ids, -100 on padding
        expected = [IGNORE_INDEX] * (n - len(answer_ids)) + answer_ids + [IGNORE_INDEX] * (len(ids) - n)
        assert labels.tolist() == expected
        assert tok.decode([t for t in labels.tolist() if t != IGNORE_INDEX]) == lead + ex.answer + suffix
        assert att.tolist() == [1] * n + [0] * (len(ids) - n)  # right padding for training
        assert (ids[n:] == tok.pad_token_id).all()
        assert not set(labels.tolist()) & image_token_ids(vlm)
        assert int(batch["answer_tokens"][r]) == len(answer_ids)
    assert torch.equal(batch["input_ids"][0][:n_prompt], inf["input_ids"][0])
    assert int(batch["attention_mask"][0].sum()) < batch["input_ids"].shape[1]  # the short row was padded
    if vlm.family != "llava_med":  # Gemma 3: image tokens keep bidirectional attention through token_type_ids
        img_tok = vlm.model.config.image_token_id
        assert torch.equal(batch["token_type_ids"] == 1, batch["input_ids"] == img_tok)
        assert (batch["input_ids"][0] == img_tok).sum() == vlm.model.config.mm_tokens_per_image


def test_answer_loss_equals_the_models_own_label_loss(vlm):
    """sum(CE on answer tokens) / answer tokens == the transformers loss with the same labels (its mean over
    non-ignored labels): an independent check of the shift and the mask."""
    batch = encode_training_batch(vlm, [_example(vlm, [10, 5, 30, 20]), _example(vlm, [3, 3, 50, 30], seed=2)])
    with torch.no_grad():
        ours = answer_loss_sum(vlm.model, batch, "cpu", torch.float32) / batch["answer_tokens"].sum()
        keys = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")
        ref = vlm.model(**{k: v for k, v in batch.items() if k in keys}, labels=batch["labels"]).loss
    assert abs(float(ours) - float(ref)) < 1e-5
    # and the prompt does not count: changing a prompt-only label position to a real id changes the loss
    bad = dict(batch, labels=batch["input_ids"].clone())
    with torch.no_grad():
        assert abs(float(answer_loss_sum(vlm.model, bad, "cpu", torch.float32) / batch["answer_tokens"].sum())
                   - float(ours)) > 1e-3


@pytest.mark.parametrize("conv", [YXYX_1000, XYXY_NORM, XYXY_NORM_PADDED,
                                  BoxConvention("xyxy_pixel", "pixels"), BoxConvention("yxyx_norm", "yx")])
@pytest.mark.parametrize("size", [(64, 64), (80, 50), (40, 90)])
def test_box_targets_round_trip_through_the_family_parser(conv, size):
    rng = np.random.default_rng(0)
    for _ in range(20):
        x0, x1 = sorted(rng.uniform(0, size[0], 2))
        y0, y1 = sorted(rng.uniform(0, size[1], 2))
        box = [x0, y0, x1 + 1, y1 + 1]
        box = [min(box[0], size[0]), min(box[1], size[1]), min(box[2], size[0]), min(box[3], size[1])]
        text = format_box(box, conv, size)
        back = conv.parse(text, size).box
        # rounding of the format: 0.5/1000 of the side (1000 scale), 5e-4 of the side (3 decimals), 0.5 px
        tol = 0.5 + 1e-9 if conv.box_format.endswith("pixel") else max(size) * 1e-3
        assert np.allclose(back, box, atol=tol), (text, back, box)


def test_targets_are_in_the_declared_convention_and_the_prompt_is_the_evaluation_prompt(demo_bench):
    from medfm_hf.tasks.grounding import GROUNDING

    rows = read_grounding_split(demo_bench, "train")
    for name, expect in (("medgemma", '{"box_2d": ['), ("llava_med", "[0.")):
        v = create_vlm(name, size="tiny")
        ex = GroundingSplit(rows, v, seed=0, train=True)[(0, 0)]
        assert ex.answer.startswith(expect)
        # the grounding evaluator's prompt for the same row and family, box instruction included
        assert ex.prompt == GROUNDING.prompt(rows[0], v) == grounding_prompt(rows[0], v)
        assert ex.prompt.startswith("Locate the ") and ex.prompt.endswith(v.box_convention.instruction)
        h, w = ex.image.shape[:2]
        assert np.allclose(v.box_convention.parse(ex.answer, (w, h)).box, rows[0]["target_bbox"], atol=w * 1e-3)


def test_perturbation_augment_moves_the_target_box_with_the_image(demo_bench):
    from medfm_hf.finetune.data import PerturbationAugment, sample_seed
    from medfm_hf.perturbations import get_perturbation
    from medfm_hf.records import decode_png, mask_to_bbox

    rows = read_grounding_split(demo_bench, "train")[:2]
    v = create_vlm("llava_med", size="tiny")
    aug = PerturbationAugment(["translate"], [3], prob=1.0, seed=0)
    ds = GroundingSplit(rows, v, seed=0, train=True, perturb=aug)
    for i, r in enumerate(rows):
        ex = ds[(0, i)]
        clean = decode_png(r["image"]["bytes"])
        assert not np.array_equal(ex.image[..., 0] if clean.ndim == 2 else ex.image, clean)
        assert ex.box != [float(b) for b in r["target_bbox"]]  # the box moved with the content
        # reference: the same draw applied to the lesion mask by hand
        rng = np.random.default_rng(sample_seed(0, 0, i))
        rng.random()  # the augmentation's apply-or-not draw
        rng.integers(1)  # which perturbation (one option)
        rng.integers(1)  # which level (one option)
        strength = aug._strengths[(r["image_id"], "translate")][3]
        mask = decode_png(r["mask"]["bytes"]) > 0
        _, moved = get_perturbation("translate").apply(clean, strength, np.random.default_rng(rng.integers(2**62)),
                                                       mask=mask)
        assert ex.box == [float(b) for b in mask_to_bbox(moved)]
        h, w = ex.image.shape[:2]
        assert ex.answer == format_box(ex.box, v.box_convention, (w, h))
    # the same (seed, epoch, index) gives the same sample; validation is never augmented
    assert ds[(0, 0)].box == ds[(0, 0)].box
    val = GroundingSplit(rows, v, seed=0, train=False, perturb=aug)
    assert val[(0, 0)].box == [float(b) for b in rows[0]["target_bbox"]]
