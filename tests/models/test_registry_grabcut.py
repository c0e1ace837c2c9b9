"""Registry, input validation, trainable groups, and the GrabCut baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfm_hf.models import SegmenterInputError, create_segmenter, list_segmenters, to_model_input


def test_registry_lists_and_builds_every_family():
    assert list_segmenters() == ["grabcut", "medsam", "medsam_lite", "sam", "sam_med2d"]
    with pytest.raises(KeyError, match="known: grabcut, medsam, medsam_lite, sam, sam_med2d"):
        create_segmenter("medsam2")
    for name in ("medsam", "sam", "sam_med2d"):
        model = create_segmenter(name, size="tiny")
        assert not model.training and model.name == name and not model.pretrained
        assert not any(p.requires_grad for p in model.parameters())
        groups = model.trainable_groups()
        assert {"image_encoder.block0", "image_encoder.block1", "adapters", "prompt_encoder", "mask_decoder"} <= set(groups)
        # the groups partition the parameters: nothing twice, nothing left out
        ids = [id(p) for ps in groups.values() for p in ps]
        assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert len(create_segmenter("sam_med2d", size="tiny").trainable_groups()["adapters"]) == 12
    with pytest.raises(ValueError, match="unknown SAM size"):
        create_segmenter("sam", size="vit_s")


def test_random_weights_are_seeded():
    a = create_segmenter("sam", size="tiny", seed=7)
    b = create_segmenter("sam", size="tiny", seed=7)
    c = create_segmenter("sam", size="tiny", seed=8)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_input_validation_messages():
    model = create_segmenter("sam", size="tiny")
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(SegmenterInputError, match=r"boxes must have shape \(B, 4\)"):
        model.predict(x, torch.zeros(3, 4))
    with pytest.raises(SegmenterInputError, match="x0 < x1"):
        model.predict(x, torch.tensor([[5.0, 5, 2, 9], [1, 1, 9, 9]]))
    with pytest.raises(SegmenterInputError, match="to_model_input"):
        model.predict(np.zeros((2, 3, 64, 64)), torch.zeros(2, 4))
    with pytest.raises(SegmenterInputError, match=r"\(B, 1\|3, H, W\)"):
        model.predict(torch.rand(2, 4, 64, 64), torch.zeros(2, 4))


def test_to_model_input_scales_by_dtype():
    grey8 = np.full((4, 5), 255, np.uint8)
    grey16 = np.full((4, 5), 65535 // 5, np.uint16)
    t = to_model_input([grey8, grey16])
    assert t.shape == (2, 1, 4, 5) and t[0].max() == 1.0 and abs(float(t[1].max()) - 0.2) < 1e-6
    rgb = to_model_input([np.zeros((4, 5, 3), np.uint8), grey8])
    assert rgb.shape == (2, 3, 4, 5) and torch.equal(rgb[1, 0], rgb[1, 2])
    with pytest.raises(SegmenterInputError, match="share a size"):
        to_model_input([grey8, np.zeros((5, 5), np.uint8)])
    with pytest.raises(SegmenterInputError, match=r"\[0, 1\]"):
        to_model_input([np.full((4, 5), 3.0)])


def _disk_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :128]
    mask = (yy - 50) ** 2 + (xx - 60) ** 2 < 22**2
    img = np.where(mask[..., None], [200, 60, 60], [40, 90, 160]).astype(np.float64)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def test_grabcut_segments_and_is_deterministic():
    imgs, masks = zip(*(_disk_scene(s) for s in range(3)))
    x = to_model_input(list(imgs))
    boxes = torch.tensor([[30.0, 20, 92, 82]] * 3)
    model = create_segmenter("grabcut")
    p1 = model.predict(x, boxes)
    p2 = model.predict(x, boxes)
    assert torch.equal(p1, p2)
    for pred, gt in zip(p1.numpy() > 0.5, masks):
        iou = (pred & gt).sum() / (pred | gt).sum()
        assert iou > 0.9
    assert set(np.unique(p1.numpy())) <= {0.0, 1.0}


def test_grabcut_refuses_bad_input():
    model = create_segmenter("grabcut")
    with pytest.raises(SegmenterInputError, match="whole"):
        model.predict(torch.rand(1, 3, 32, 32), torch.tensor([[0.0, 0, 32, 32]]))
    with pytest.raises(ValueError, match="no weights"):
        create_segmenter("grabcut", checkpoint="x.pth")
    assert model.trainable_groups() == {"adapters": [], "prompt_encoder": [], "mask_decoder": []}
