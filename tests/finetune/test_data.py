"""Training samples: deterministic per (seed, epoch, index); augmentations move masks and boxes together."""

from __future__ import annotations

import numpy as np
import torch

from medfm_hf.finetune.data import PerturbationAugment, Sample, SegmentationSplit, rank_batches, read_split
from medfm_hf.records import mask_to_bbox


def _box_of(mask: torch.Tensor) -> list[int]:
    return mask_to_bbox(mask.numpy() > 0.5)


def test_samples_are_deterministic_and_augmented_consistently(demo_bench):
    rows = read_split(demo_bench, "train")
    ds = SegmentationSplit(rows, size=128, seed=3, train=True, augment=True)
    a, b = ds[(2, 5)], ds[(2, 5)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["box"], b["box"])
    assert a["image"].shape == (3, 128, 128) and a["mask"].shape == (128, 128)
    differs = 0
    for i in range(len(rows)):
        s = ds[(0, i)]
        assert s["box"].tolist() == [float(v) for v in _box_of(s["mask"])]  # the box is the moved mask's box
        plain = SegmentationSplit(rows, size=128, seed=3, train=False)[(0, i)]
        differs += int(not torch.equal(plain["image"], s["image"]))
    assert differs > 0  # the augmentation did something


def test_perturbation_augment_moves_mask_and_box_with_geometry(demo_bench):
    rows = read_split(demo_bench, "train")
    ds = SegmentationSplit(rows, size=256, seed=0, train=False)
    s = ds.sample(0)
    aug = PerturbationAugment(["rotate"], [3], prob=1.0, seed=0)
    out = aug(s, np.random.default_rng(0))
    assert out.image.shape == s.image.shape and not np.array_equal(out.image, s.image)
    assert not np.array_equal(out.mask, s.mask) and out.bbox == mask_to_bbox(out.mask)
    noise = PerturbationAugment(["gaussian_noise"], [2], prob=1.0, seed=0)(s, np.random.default_rng(1))
    assert np.array_equal(noise.mask, s.mask) and not np.array_equal(noise.image, s.image)
    assert isinstance(noise, Sample)


def test_rank_batches_partition_the_global_batch():
    one = rank_batches(12, seed=0, epoch=1, per_device=4, world=1, rank=0, accumulation=1)
    two = [rank_batches(12, seed=0, epoch=1, per_device=2, world=2, rank=r, accumulation=1) for r in (0, 1)]
    acc = rank_batches(12, seed=0, epoch=1, per_device=2, world=1, rank=0, accumulation=2)
    assert len(one) == 3 and len(two[0]) == len(two[1]) == 3 and len(acc) == 6
    for k in range(3):
        assert sorted(two[0][k] + two[1][k]) == sorted(one[k]) == sorted(acc[2 * k] + acc[2 * k + 1])
        assert not set(two[0][k]) & set(two[1][k])
