"""medfm_hf.ssim against scikit-image's structural_similarity (the reference implementation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from medfm_hf.ssim import SSIMError, SSIMReference, default_data_range, ssim, ssim_batch

from .conftest import to_uint16


def _reference(a, b, data_range=None):
    data_range = default_data_range(a.dtype) if data_range is None else data_range
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return structural_similarity(a, b, data_range=data_range, channel_axis=-1 if a.ndim == 3 else None)


def _noisy(img, sigma_frac, seed):
    top = np.iinfo(img.dtype).max
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma_frac * top, img.shape), 0, top).astype(img.dtype)


REAL = {
    "camera": data.camera()[100:260, 150:330],
    "retina": data.retina()[400:600, 500:690],
    "ihc": data.immunohistochemistry()[:150, :170],
}


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("bits", [8, 16])
def test_equal_to_skimage_on_real_images(name, bits):
    a = REAL[name]
    if bits == 16:
        a = to_uint16(a)
    for seed, sigma in ((0, 0.02), (1, 0.1), (2, 0.4)):
        b = _noisy(a, sigma, seed)
        assert abs(ssim(a, b) - _reference(a, b)) < 1e-6


@pytest.mark.parametrize("shape", [(7, 7), (31, 45), (64, 64), (40, 33, 3), (9, 70, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_equal_to_skimage_on_random_images(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    top = np.iinfo(dtype).max
    a = rng.integers(0, top + 1, shape, dtype=dtype)
    b = rng.integers(0, top + 1, shape, dtype=dtype)
    c = np.clip(a.astype(np.int64) + rng.integers(-top // 10, top // 10, shape), 0, top).astype(dtype)
    for other in (b, c, a):
        assert abs(ssim(a, other) - _reference(a, other)) < 1e-6


def test_constant_images_are_defined_and_match():
    a = np.full((32, 32), 100, np.uint8)
    b = np.full((32, 32), 140, np.uint8)
    noisy = _noisy(a, 0.05, 3)
    for x, y in ((a, a), (a, b), (a, noisy), (noisy, a)):
        value = ssim(x, y)
        assert np.isfinite(value)
        assert abs(value - _reference(x, y)) < 1e-6
    assert ssim(a, a) == pytest.approx(1.0)


def test_explicit_data_range_for_narrow_16_bit_and_float():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4096, (48, 48)).astype(np.uint16)  # 12-bit CT in a uint16 container
    b = np.clip(a.astype(int) + rng.integers(-200, 200, a.shape), 0, 4095).astype(np.uint16)
    assert abs(ssim(a, b, data_range=4095) - _reference(a, b, 4095)) < 1e-6
    assert ssim(a, b, data_range=4095) < ssim(a, b)  # the dtype range hides the differences
    af, bf = a / 4095.0, b / 4095.0
    assert abs(ssim(af, bf, data_range=1.0) - _reference(af, bf, 1.0)) < 1e-6


def test_batched_form_equals_one_by_one():
    a = REAL["ihc"]
    cands = [_noisy(a, s, i) for i, s in enumerate((0.01, 0.05, 0.2, 0.5))]
    batch = ssim_batch(a, cands)
    assert batch.shape == (4,)
    np.testing.assert_allclose(batch, [_reference(a, c) for c in cands], atol=1e-6)
    ref = SSIMReference(a)
    np.testing.assert_allclose(ref.score_many(np.stack(cands), chunk=3), batch, atol=1e-12)
    assert ref.score(cands[1]) == pytest.approx(batch[1], abs=1e-12)
    assert list(batch) == sorted(batch, reverse=True)  # more noise, lower SSIM


def test_inputs_not_mutated():
    a = REAL["camera"].copy()
    b = _noisy(a, 0.1, 0)
    a0, b0 = a.copy(), b.copy()
    ssim(a, b)
    ssim_batch(a, [b])
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        (np.zeros((16, 16), np.uint8), np.zeros((16, 17), np.uint8), {}, "differs"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {}, "data_range"),
        (np.full((16, 16), np.nan), np.zeros((16, 16)), {"data_range": 1.0}, "NaN"),
        (np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8), {}, "7x7"),
        (np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), {"data_range": 0}, "positive"),
        (np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8), {}, "shape"),
    ],
)
def test_bad_input_gives_clear_error(a, b, kwargs, match):
    with pytest.raises(SSIMError, match=match):
        ssim(a, b, **kwargs)
