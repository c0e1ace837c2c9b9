"""IoU / Dice against torchmetrics on random mask pairs; edge cases and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

from medfm_hf.metrics import binarize_mask, dice_per_image, iou_per_image, segmentation_scores


def _random_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (probability map, binary mask) pair of a random kind, including empty ones."""
    h, w = rng.integers(8, 65, size=2)
    kind = rng.integers(0, 5)
    yy, xx = np.mgrid[:h, :w]

    def blob() -> np.ndarray:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, h / 2), rng.uniform(1, w / 2)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0

    ref = blob()
    if kind == 0:  # both empty
        return np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    if kind == 1:  # empty prediction or empty reference
        if rng.random() < 0.5:
            return np.zeros((h, w), np.float32), ref
        return blob().astype(np.float32) * rng.uniform(0.51, 1.0), np.zeros((h, w), bool)
    if kind == 2:  # noisy probabilities around the reference
        prob = np.clip(ref * 0.8 + rng.normal(0, 0.3, (h, w)), 0, 1).astype(np.float32)
        return prob, ref
    if kind == 3:  # random noise masks
        return rng.random((h, w)).astype(np.float32), rng.random((h, w)) < rng.uniform(0.05, 0.9)
    return blob().astype(np.float32), ref  # two blobs


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261128)
    return [_random_pair(rng) for _ in range(240)]


def test_iou_and_dice_match_torchmetrics_except_both_empty(pairs):
    preds = [p for p, _ in pairs]
    refs = [r for _, r in pairs]
    ours_iou = iou_per_image(preds, refs)
    ours_dice = dice_per_image(preds, refs)
    both_empty = 0
    for (p, r), iou, dice in zip(pairs, ours_iou, ours_dice):
        tp, tr = torch.from_numpy(p), torch.from_numpy(r.astype(np.int64))
        ref_iou = float(binary_jaccard_index(tp, tr, threshold=0.5))
        ref_dice = float(binary_f1_score(tp, tr, threshold=0.5))
        if not (p > 0.5).any() and not r.any():
            # the one documented difference: torchmetrics scores 0/0 as zero_division (0), we as 1
            both_empty += 1
            assert (iou, dice) == (1.0, 1.0)
            assert (ref_iou, ref_dice) == (0.0, 0.0)
        else:
            assert iou == pytest.approx(ref_iou, abs=1e-6)
            assert dice == pytest.approx(ref_dice, abs=1e-6)
    assert len(pairs) >= 200
    assert 20 <= both_empty < len(pairs) - 150  # the sample really has both kinds


def test_empty_score_nan_matches_torchmetrics_zero_division(pairs):
    preds = [p for p, _ in pairs]
    refs = [r for _, r in pairs]
    ours = iou_per_image(preds, refs, empty_score=0.0)
    theirs = [
        float(binary_jaccard_index(torch.from_numpy(p), torch.from_numpy(r.astype(np.int64)), zero_division=0.0))
        for p, r in pairs
    ]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    nan_scores = segmentation_scores(preds, refs, metric="dice", empty_score=float("nan"))
    finite = [v for v in nan_scores["per_image_dice"] if not math.isnan(v)]
    assert nan_scores["dice"] == pytest.approx(float(np.mean(finite)))
    assert len(finite) == len(pairs) - nan_scores["num_both_empty"]


def test_hand_computed_values():
    p = np.zeros((4, 4), bool)
    p[:2, :2] = True
    g = np.zeros((4, 4), bool)
    g[:2, :] = True
    out = segmentation_scores([p, g], [g, g], metric="iou")
    assert out["per_image_iou"] == [0.5, 1.0]
    assert out["iou"] == 0.75
    assert dice_per_image([p], [g]) == [pytest.approx(2 * 4 / (4 + 8))]
    assert iou_per_image([p], [np.zeros((4, 4), bool)]) == [0.0]


def test_binarize_accepts_bool_01_0255_and_probabilities():
    ref = np.array([[0, 1], [1, 0]], bool)
    for mask in (ref, ref.astype(np.uint8), ref.astype(np.uint8) * 255, ref * 0.9, ref.astype(np.int64), ref * 255.0):
        np.testing.assert_array_equal(binarize_mask(mask), ref)
    # exactly 0.5 is background (foreground is > threshold, as in torchmetrics)
    assert not binarize_mask(np.full((2, 2), 0.5)).any()
    assert binarize_mask(np.full((2, 2), 0.5), threshold=0.4).all()
    assert binarize_mask([[0.0, 0.7]]).tolist() == [[False, True]]


@pytest.mark.parametrize(
    ("pred", "ref", "match"),
    [
        (np.zeros((4, 4)), np.zeros((5, 4)), "shape"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "2-D"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), "NaN"),
        (np.zeros((4, 4), dtype="U1"), np.zeros((4, 4)), "dtype"),
        (np.full((4, 4), 3.2), np.zeros((4, 4)), "sigmoid"),  # logits
        (np.zeros((4, 4)), np.arange(16).reshape(4, 4) % 3, "label"),  # a label map
    ],
)
def test_bad_input_is_explained(pred, ref, match):
    with pytest.raises(ValueError, match=match):
        iou_per_image([pred], [ref])


def test_length_mismatch_and_unknown_metric():
    with pytest.raises(ValueError, match="one prediction per reference"):
        dice_per_image([np.zeros((2, 2))], [])
    with pytest.raises(ValueError, match="unknown metric"):
        segmentation_scores([], [], metric="hausdorff")
    assert math.isnan(segmentation_scores([], [])["iou"])
