"""MedSAM preprocessing vs the reference recipe (scikit-image resize order 3 + min-max) on demo images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import resize

from medfm_hf.models import to_model_input
from medfm_hf.models.medsam import medsam_preprocess


def reference_recipe(img: np.ndarray, size: int, cast_uint8: bool = True) -> np.ndarray:
    """MedSAM_Inference.py: grey -> 3 channels, skimage resize(order=3), uint8 cast, min-max."""
    img3 = np.repeat(img[:, :, None], 3, axis=-1) if img.ndim == 2 else img
    r = resize(img3, (size, size), order=3, preserve_range=True, anti_aliasing=True)
    if cast_uint8:
        r = r.astype(np.uint8)
    return (r - r.min()) / np.clip(r.max() - r.min(), 1e-8, None)


@pytest.fixture(scope="module")
def demo_images() -> dict[str, np.ndarray]:
    from medfm_hf.sources.demo import load_demo

    out: dict[str, np.ndarray] = {}
    for rec in load_demo(split="test"):
        out.setdefault(rec.modality, rec.image)
    return out


@pytest.mark.parametrize("modality", ["ct", "oct", "dermoscopy"])
def test_matches_reference_at_1024(demo_images, modality):
    img = demo_images[modality]
    got = medsam_preprocess(to_model_input([img]), 1024)[0].permute(1, 2, 0).numpy()
    exact = reference_recipe(img, 1024, cast_uint8=False)
    assert np.abs(got - exact).max() < 1e-5  # the same linear operator
    full = reference_recipe(img, 1024)  # with the reference's uint8 truncation
    rng = float(img.max()) - float(img.min())
    assert np.abs(got - full).max() <= 1.0 / rng + 1e-5  # one grey level, stretched by the min-max
    assert np.abs(got - full).mean() < 0.003


def test_all_modalities_downsampling_and_non_square(demo_images):
    """Every demo modality, resized down (anti-aliasing path) and from a non-square crop, at small S."""
    assert len(demo_images) == 10
    for modality, img in demo_images.items():
        for crop, size in ((img, 128), (img[:200], 160)):
            got = medsam_preprocess(to_model_input([crop]), size)[0].permute(1, 2, 0).numpy()
            exact = reference_recipe(crop, size, cast_uint8=False)
            assert np.abs(got - exact).max() < 1e-5, (modality, crop.shape, size)


def test_bicubic_option_is_close_but_not_exact(demo_images):
    img = demo_images["ct"]
    x = to_model_input([img])
    spline = medsam_preprocess(x, 512)
    bicubic = medsam_preprocess(x, 512, interpolation="bicubic")
    diff = (spline - bicubic).abs()
    assert 0 < diff.mean() < 0.01
    with pytest.raises(ValueError, match="interpolation"):
        medsam_preprocess(x, 512, interpolation="nearest")


def test_gradient_flows_and_batches_are_independent(demo_images):
    x = to_model_input([demo_images["mri"], demo_images["ct"]]).requires_grad_(True)
    out = medsam_preprocess(x, 256)
    out[0].sum().backward()
    assert x.grad[0].abs().sum() > 0 and x.grad[1].abs().sum() == 0
    single = medsam_preprocess(x[1:].detach(), 256)
    assert torch.allclose(single[0], out[1].detach(), atol=1e-6)
