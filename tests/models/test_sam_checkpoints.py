"""SAM / MedSAM: key conversion, checkpoint layouts, and equality with the original implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medfm_hf.models import CheckpointError, create_segmenter
from medfm_hf.models.checkpoints import hf_to_original, original_to_hf
from medfm_hf.models.sam_hf import config_from_original, sam_config


def _tiny(name: str, ref, seed: int = 1):
    model = create_segmenter(name, size="tiny", seed=seed)
    ref.randomize_(model.model, seed)
    with torch.no_grad():  # keep the tied Fourier matrix consistent
        model.model.shared_image_embedding.positional_embedding.copy_(
            model.model.prompt_encoder.shared_embedding.positional_embedding
        )
    return model


def test_key_conversion_round_trip_is_exact(ref):
    sam = ref.randomize_(ref.sam(), 0)
    orig = sam.state_dict()
    hf = original_to_hf(orig)
    back = hf_to_original(hf)
    assert set(back) == set(orig)
    assert all(torch.equal(back[k], orig[k]) for k in orig)
    assert "vision_encoder.layers.0.layer_norm1.weight" in hf
    assert "mask_decoder.iou_prediction_head.proj_out.weight" in hf


@pytest.mark.parametrize("size,params_m", [("vit_b", 93.7), ("vit_l", 312.3), ("vit_h", 641.1)])
def test_presets_match_published_sizes_and_inferred_config(size, params_m):
    from transformers import SamModel

    with torch.device("meta"):
        model = SamModel(sam_config(size))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(params_m, rel=0.01)  # SAM paper / model card sizes
    cfg = config_from_original(hf_to_original(model.state_dict()))
    assert cfg.vision_config.hidden_size == model.config.vision_config.hidden_size
    assert list(cfg.vision_config.global_attn_indexes) == list(model.config.vision_config.global_attn_indexes)
    assert cfg.vision_config.window_size == 14 and cfg.vision_config.image_size == 1024
    assert cfg.mask_decoder_config.mlp_dim == 2048


def test_sam_matches_original_implementation(ref, images_boxes):
    """Our SAM (transformers + converter + torch preprocessing) == segment-anything on the same weights."""
    from segment_anything.utils.transforms import ResizeLongestSide

    images, boxes = images_boxes
    model = _tiny("sam", ref)
    reference = ref.sam()
    reference.load_state_dict(model.original_state_dict(), strict=True)
    H, W = images.shape[-2:]
    tr = ResizeLongestSide(256)
    # ResizeLongestSide.apply_image_torch reads the size from the wrong axes (B, C), so resize as it intends:
    resized = F.interpolate(images * 255.0, tr.get_preprocess_shape(H, W, 256), mode="bilinear",
                            align_corners=False, antialias=True)
    x = reference.preprocess(resized)
    low, _ = ref.low_res(reference, x, tr.apply_boxes_torch(boxes, (H, W)))
    expected = torch.sigmoid(reference.postprocess_masks(low, tr.get_preprocess_shape(H, W, 256), (H, W)))[:, 0]
    got = model.predict(images, boxes)
    assert got.shape == (2, H, W)
    assert (got - expected).abs().max() < 1e-4
    assert expected.std() > 0.01  # the comparison is between non-trivial outputs


def test_medsam_matches_original_recipe(ref, images_boxes):
    """MedSAM = segment-anything's encoder/decoder on MedSAM's recipe: scikit-image ``resize(order=3)`` (float,
    without the uint8 cast), min-max, box scaled to S, single mask, sigmoid then bilinear to H x W."""
    from skimage.transform import resize

    images, boxes = images_boxes
    model = _tiny("medsam", ref, seed=2)
    reference = ref.sam()
    reference.load_state_dict(model.original_state_dict(), strict=True)
    H, W = images.shape[-2:]
    x = []
    for im in images.permute(0, 2, 3, 1).numpy().astype(np.float64):
        r = resize(im, (256, 256), order=3, preserve_range=True, anti_aliasing=True)
        x.append(((r - r.min()) / max(r.max() - r.min(), 1e-8)).transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(x)).float()
    box = boxes / torch.tensor([W, H, W, H]) * 256
    low, _ = ref.low_res(reference, x, box)
    expected = F.interpolate(torch.sigmoid(low), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    got = model.predict(images, boxes)
    assert (got - expected).abs().max() < 1e-4
    assert expected.std() > 0.01


@pytest.mark.parametrize("name", ["sam", "medsam"])
def test_checkpoint_layouts_round_trip(name, ref, images_boxes, tmp_path):
    images, boxes = images_boxes
    model = _tiny(name, ref, seed=4)
    expected = model.predict(images, boxes)

    pth = tmp_path / "original.pth"
    model.save_original(str(pth))  # the layout of medsam_vit_b.pth / sam_vit_b_01ec64.pth
    assert all(k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder.")) for k in torch.load(pth))
    folder = tmp_path / "hf"
    model.save_pretrained(str(folder))  # transformers layout (config.json + safetensors)
    assert (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    st = tmp_path / "hf_keys.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()
               if k != "shared_image_embedding.positional_embedding"}, str(st))

    for ckpt in (pth, folder, st):
        loaded = create_segmenter(name, checkpoint=str(ckpt))
        assert loaded.pretrained and not loaded.training
        assert torch.equal(loaded.predict(images, boxes), expected), ckpt


def test_mismatched_checkpoint_names_keys(ref, tmp_path):
    model = _tiny("sam", ref)
    sd = model.original_state_dict()
    sd.pop("mask_decoder.output_hypernetworks_mlps.2.layers.1.bias")
    sd["image_encoder.blocks.0.attn.extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        create_segmenter("medsam", checkpoint=str(path))
    msg = str(err.value)
    # named as in the file (original layout)
    assert "mask_decoder.output_hypernetworks_mlps.2.layers.1.bias" in msg
    assert "image_encoder.blocks.0.attn.extra.weight" in msg
    assert "missing keys (1)" in msg and "unexpected keys (1)" in msg

    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        create_segmenter("sam", checkpoint=str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError):
        create_segmenter("sam", checkpoint=str(tmp_path / "missing.pth"))


def test_shape_mismatch_is_reported(ref, tmp_path):
    sd = _tiny("sam", ref).original_state_dict()
    sd["image_encoder.blocks.0.mlp.lin2.bias"] = torch.zeros(63)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"blocks.0.mlp.lin2.bias: checkpoint \(63,\) vs model \(64,\)"):
        create_segmenter("sam", checkpoint=str(tmp_path / "bad.pth"))
