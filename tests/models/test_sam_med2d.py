"""SAM-Med2D: our architecture vs the published one, strict loading, and the predictor's recipe."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medfm_hf.models import CheckpointError, create_segmenter
from medfm_hf.models.sam_med2d import SAM_MED2D_SIZES, AdapterLayer, SamMed2D


def _tiny(ref, seed: int = 5, **kw):
    model = create_segmenter("sam_med2d", size="tiny", seed=seed, **kw)
    return ref.randomize_(model, seed)


def test_vit_b_has_the_published_size_and_key_names():
    with torch.device("meta"):
        model = SamMed2D(SAM_MED2D_SIZES["vit_b"])
    sd = model.state_dict()
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(271.2, abs=0.5)  # SAM-Med2D README: 271M parameters
    assert tuple(sd["image_encoder.blocks.0.Adapter.channel.0.weight"].shape) == (192, 768)
    assert tuple(sd["image_encoder.blocks.11.Adapter.spatial.2.weight"].shape) == (768, 768, 4, 4)
    assert tuple(sd["image_encoder.pos_embed"].shape) == (1, 16, 16, 768)
    assert tuple(sd["image_encoder.blocks.2.attn.rel_pos_h"].shape) == (31, 64)  # global block at 16x16
    assert tuple(sd["image_encoder.blocks.0.attn.rel_pos_h"].shape) == (27, 64)  # 14x14 windows
    assert "pixel_mean" not in sd


def test_adapter_layer_formula():
    gen = torch.Generator().manual_seed(0)
    layer = AdapterLayer(8)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    x = torch.randn((2, 4, 4, 8), generator=gen)
    z = x.permute(0, 3, 1, 2)
    w1, w2 = layer.channel[0].weight, layer.channel[2].weight
    gate = torch.sigmoid(torch.relu(z.mean(dim=(2, 3)) @ w1.T) @ w2.T)[:, :, None, None]
    zg = z * gate
    sp = torch.relu(F.conv_transpose2d(torch.relu(F.conv2d(zg, layer.spatial[0].weight, stride=2, padding=1)),
                                       layer.spatial[2].weight, stride=2, padding=1))
    expected = F.layer_norm((zg + sp).permute(0, 2, 3, 1), (8,), layer.norm.weight, layer.norm.bias)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_matches_segment_anything_when_adapters_are_silenced(ref, images_boxes):
    """With each adapter's output zeroed (its final LayerNorm set to 0), SAM-Med2D is SAM at 256 px:
    compare with segment-anything run through SAM-Med2D's predictor recipe (cv2 nearest resize)."""
    images, boxes = images_boxes
    model = _tiny(ref)
    with torch.no_grad():
        for blk in model.image_encoder.blocks:
            blk.Adapter.norm.weight.zero_()
            blk.Adapter.norm.bias.zero_()
    reference = ref.sam()
    sd = {k: v for k, v in model.state_dict().items() if ".Adapter." not in k}
    reference.load_state_dict(sd, strict=True)
    H, W = images.shape[-2:]
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    x = []
    for im in images.permute(0, 2, 3, 1).numpy():
        norm = (im * 255.0 - mean) / std
        x.append(cv2.resize(norm, (256, 256), interpolation=cv2.INTER_NEAREST).transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(x))
    box = boxes * torch.tensor([256 / W, 256 / H, 256 / W, 256 / H])
    low, iou = ref.low_res(reference, x, box, multimask=True)
    best = low[torch.arange(2), iou.argmax(1)][:, None]
    up = F.interpolate(F.interpolate(best, (256, 256), mode="bilinear", align_corners=False), (H, W),
                       mode="bilinear", align_corners=False)
    expected = torch.sigmoid(up)[:, 0]
    got = model.predict(images, boxes)
    assert (got - expected).abs().max() < 1e-4
    assert expected.std() > 0.01


def test_adapters_change_the_output(ref, images_boxes):
    images, boxes = images_boxes
    model = _tiny(ref)
    with_adapters = model.predict(images, boxes)
    with torch.no_grad():
        for blk in model.image_encoder.blocks:
            blk.Adapter.norm.weight.zero_()
            blk.Adapter.norm.bias.zero_()
    assert (model.predict(images, boxes) - with_adapters).abs().max() > 1e-3


def test_checkpoint_round_trip_and_strict_errors(ref, images_boxes, tmp_path):
    images, boxes = images_boxes
    model = _tiny(ref)
    path = tmp_path / "sam-med2d_tiny.pth"
    model.save_checkpoint(str(path))
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model"} and any(".Adapter." in k for k in saved["model"])
    loaded = create_segmenter("sam_med2d", checkpoint=str(path), size="tiny")
    assert loaded.pretrained and not loaded.training
    assert torch.equal(loaded.predict(images, boxes), model.predict(images, boxes))

    # a plain SAM checkpoint (no adapters) must not load silently
    plain = {k: v for k, v in saved["model"].items() if ".Adapter." not in k}
    torch.save({"model": plain, "epoch": torch.tensor(3)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError) as err:
        create_segmenter("sam_med2d", checkpoint=str(tmp_path / "plain.pth"), size="tiny")
    assert "image_encoder.blocks.0.Adapter.channel.0.weight" in str(err.value)
    assert "missing keys (12)" in str(err.value)

    extra = dict(saved["model"], **{"mask_decoder.extra_head.weight": torch.zeros(2)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): mask_decoder.extra_head.weight"):
        create_segmenter("sam_med2d", checkpoint=str(tmp_path / "extra.pth"), size="tiny")

    # the wrong size is a shape mismatch, named
    with pytest.raises(CheckpointError, match="shape mismatches"):
        create_segmenter("sam_med2d", checkpoint=str(path), size="tiny", embed_dim=32, num_heads=1)

    # constant normalisation buffers some checkpoints carry are accepted only if they are SAM-Med2D's
    good = dict(saved["model"], pixel_mean=torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1))
    torch.save({"model": good}, tmp_path / "with_mean.pth")
    create_segmenter("sam_med2d", checkpoint=str(tmp_path / "with_mean.pth"), size="tiny")
    bad = dict(saved["model"], pixel_mean=torch.zeros(3, 1, 1))
    torch.save({"model": bad}, tmp_path / "bad_mean.pth")
    with pytest.raises(CheckpointError, match="pixel_mean"):
        create_segmenter("sam_med2d", checkpoint=str(tmp_path / "bad_mean.pth"), size="tiny")


def test_longest_side_resize_option(ref, images_boxes):
    images, boxes = images_boxes
    model = _tiny(ref, resize="longest_side")
    probs = model.predict(images, boxes)
    assert probs.shape == (2, 200, 240)
    x, model_boxes, (h, w) = model.preprocess(images, boxes)
    assert (h, w) == (213, 256) and x.shape == (2, 3, 256, 256)
    assert torch.all(x[..., 213:, :] == 0)  # padded bottom rows
    with pytest.raises(ValueError, match="resize"):
        create_segmenter("sam_med2d", size="tiny", resize="crop")
