"""The clean-record contract and PNG round trips."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.records import (
    Record,
    RecordError,
    decode_png,
    encode_png,
    mask_to_bbox,
    read_records_parquet,
    write_records_parquet,
)


def _rec(**kw):
    img = np.zeros((20, 30), np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 7:12] = True
    base = dict(image_id="src/a", source="src", modality="ct", task="segmentation", image=img, split="test",
                mask=mask)
    base.update(kw)
    return Record(**base)


def test_mask_to_bbox_exclusive_end():
    m = np.zeros((10, 10), bool)
    m[2:4, 3:8] = True
    assert mask_to_bbox(m) == [3, 2, 8, 4]
    assert mask_to_bbox(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(modality="petct"), "unknown modality"),
        (dict(task="detect"), "unknown task"),
        (dict(split="dev"), "unknown split"),
        (dict(image_id="noslash"), "source/stem"),
        (dict(image=np.zeros((20, 30), np.float32)), "dtype"),
        (dict(image=np.zeros((20, 30, 4), np.uint8)), "shape"),
        (dict(mask=np.zeros((10, 10), bool)), "mask shape"),
        (dict(options=["a", "b"], answer="C"), "option letters"),
        (dict(target_bbox=[0, 0, 40, 10]), "inside"),
    ],
)
def test_validate_rejects(kw, msg):
    with pytest.raises(RecordError, match=msg):
        _rec(**kw).validate()


def test_segmentation_needs_mask():
    with pytest.raises(RecordError, match="needs a mask"):
        _rec(mask=None).validate()


@pytest.mark.parametrize("shape,dtype", [((9, 11), np.uint8), ((9, 11), np.uint16), ((9, 11, 3), np.uint8),
                                          ((9, 11, 3), np.uint16)])
def test_png_round_trip_lossless(shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    b = decode_png(encode_png(a))
    assert b.dtype == dtype and np.array_equal(a, b)


def test_decode_corrupt():
    with pytest.raises(RecordError, match="corrupt"):
        decode_png(b"not a png")


def test_parquet_round_trip(tmp_path):
    r = _rec(question="q?", options=["x", "y", "z", "w"], answer="B", caption="c", target_bbox=[1, 2, 3, 4],
             meta={"window": {"center": 40, "width": 400}})
    p = str(tmp_path / "x.parquet")
    write_records_parquet([r], p)
    (back,) = read_records_parquet(p)
    assert np.array_equal(back.image, r.image) and np.array_equal(back.mask, r.mask)
    assert back.bbox == r.bbox and back.options == r.options and back.meta == r.meta


@pytest.mark.parametrize("shape,dtype", [((9, 11), np.uint8), ((9, 11), np.uint16), ((9, 11, 3), np.uint8),
                                          ((9, 11, 3), np.uint16)])
def test_png_shape_from_header(shape, dtype):
    from medfm_hf.records import png_shape

    data = encode_png(np.zeros(shape, dtype))
    assert png_shape(data) == decode_png(data).shape == shape
    assert png_shape(b"\xff\xd8\xff not a png") is None
