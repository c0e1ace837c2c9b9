"""Shared reading, binarisation, pairing and split helpers of ``medfm_hf.sources._common``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from medfm_hf.sources._common import (
    ImageReadError,
    MaskError,
    binarise_mask,
    conform_channels,
    decode_image,
    draw_split,
    pair_by_stem,
    parse_fractions,
    read_image,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport


def _pil_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_16bit_grey_png_is_kept_lossless(rng):
    a = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    out = decode_image(_pil_bytes(Image.fromarray(a)), "a.png")
    assert out.dtype == np.uint16 and np.array_equal(out, a)


def test_16bit_colour_png_is_kept_lossless(rng):
    a = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
    notes: list[str] = []
    out = decode_image(buf.tobytes(), "a.png", notes)
    assert out.dtype == np.uint16 and np.array_equal(out, a)
    assert any("16-bit" in n for n in notes)


def test_16bit_tiff_grey_and_colour_are_kept_lossless(tmp_path, rng):
    grey = rng.integers(0, 65536, (8, 9), dtype=np.uint16)
    colour = rng.integers(0, 65536, (8, 9, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.tif"), grey)
    cv2.imwrite(str(tmp_path / "c.tif"), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_image(tmp_path / "g.tif"), grey)
    out = read_image(tmp_path / "c.tif")
    assert out.dtype == np.uint16 and np.array_equal(out, colour)


def test_rgba_drops_alpha_and_palette_becomes_rgb_or_grey(rng):
    rgba = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    notes: list[str] = []
    out = decode_image(_pil_bytes(Image.fromarray(rgba, "RGBA")), "a.png", notes)
    assert out.shape == (10, 12, 3) and np.array_equal(out, rgba[..., :3]) and "alpha" in notes[0]

    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    idx = rng.integers(0, 4, (10, 12), dtype=np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette(colours.ravel().tolist())
    out = decode_image(_pil_bytes(pal), "p.png")
    assert np.array_equal(out, colours[idx])

    grey_pal = Image.fromarray(idx, "P")
    grey_pal.putpalette(np.repeat(np.array([0, 60, 120, 250], np.uint8), 3).tolist())
    notes = []
    out = decode_image(_pil_bytes(grey_pal), "g.png", notes)
    assert out.ndim == 2 and np.array_equal(out, np.array([0, 60, 120, 250], np.uint8)[idx])
    assert "grey palette" in notes[0]


def test_one_bit_image_becomes_0_255(rng):
    bits = rng.integers(0, 2, (8, 9)).astype(bool)
    out = decode_image(_pil_bytes(Image.fromarray(bits)), "b.png")
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255} and np.array_equal(out > 0, bits)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_and_empty_files_are_clear_errors(tmp_path, rng, fx, ext):
    p = fx.truncate(fx.write(tmp_path / f"a{ext}", fx.rgb(rng)))
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(p)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="cannot open"):
        read_image(tmp_path / "missing.png")


def test_float_tiff_is_rejected(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(np.ones((5, 5), np.float32)).save(p)
    with pytest.raises(ImageReadError, match="floating-point"):
        read_image(p)


def test_conform_channels():
    grey3 = np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4, 1), 3, axis=2)
    assert conform_channels(grey3, "ct").shape == (3, 4)
    colour = grey3.copy()
    colour[0, 0, 1] = 99
    assert conform_channels(colour, "ct").shape == (3, 4, 3)  # real colour is never discarded
    assert conform_channels(grey3[..., 0], "fundus").shape == (3, 4, 3)


def test_binarise_mask_cases():
    m = np.zeros((6, 6), np.uint8)
    m[1:3, 2:5] = 255
    mask, problem = binarise_mask(m, lossy=False)
    assert problem is None and mask.sum() == 6
    mask, problem = binarise_mask((m > 0).astype(np.uint8), lossy=False)  # 0/1 masks
    assert problem is None and mask.sum() == 6
    noisy = m.copy()
    noisy[0, 0], noisy[1, 2] = 30, 200  # JPEG-like noise
    mask, problem = binarise_mask(noisy, lossy=True)
    assert problem is None and mask.sum() == 6 and not mask[0, 0]
    mask, problem = binarise_mask(noisy, lossy=False)
    assert "non-binary" in problem and mask.sum() == 6
    with pytest.raises(MaskError, match="label map"):
        binarise_mask(np.array([[0, 1], [2, 0]], np.uint8), lossy=False)
    _, problem = binarise_mask(np.full((3, 3), 255, np.uint8), lossy=False)
    assert "entirely foreground" in problem
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1, 1, 0] = 255  # a red mask
    mask, _ = binarise_mask(colour, lossy=False)
    assert mask.sum() == 1 and mask[1, 1]


def test_pair_by_stem_multi_masks_exact_wins_duplicates_orphans():
    images = [Path(n) for n in ("a.png", "a_1.png", "b.png", "c.png", "c.jpg", "d.png", "notes.txt")]
    masks = [Path(n) for n in ("a.png", "a_1.png", "a_2.png", "b.png", "b_1.png", "c.png", "zzz.png")]
    res = pair_by_stem(images, masks)
    assert res.pairs["a"][1] == [Path("a.png"), Path("a_2.png")]  # a_1.png belongs to image a_1
    assert res.pairs["a_1"][1] == [Path("a_1.png")]
    assert res.pairs["b"][1] == [Path("b.png"), Path("b_1.png")]
    assert set(res.duplicates) == {"c"} and "c" not in res.pairs
    assert res.missing_mask == [Path("d.png")]
    assert res.orphan_masks == [Path("zzz.png")]
    assert res.other_files == [Path("notes.txt")]

    busi = pair_by_stem([Path("benign (4).png")], [Path("benign (4)_mask.png"), Path("benign (4)_mask_1.png")],
                        mask_suffix="_mask")
    assert len(busi.pairs["benign (4)"][1]) == 2


def test_draw_split_is_deterministic_and_proportional():
    keys = [f"k{i:03d}" for i in range(100)]
    a = draw_split(keys, 7)
    assert a == draw_split(list(reversed(keys)), 7)  # order of discovery does not matter
    assert a != draw_split(keys, 8)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 70, "validation": 10, "test": 20}
    with pytest.raises(ValueError, match="sum"):
        parse_fractions("0.5,0.2,0.2")


def test_split_file_is_reused_never_redrawn(tmp_path):
    sf = tmp_path / "out" / "splits.json"
    keys = [f"k{i}" for i in range(30)]
    first = resolve_splits(keys, source="s", seed=1, report=SourceReport("s"), split_file=sf)
    recorded = json.loads(sf.read_text())["sources"]["s"]
    assert recorded["assignments"] == first and recorded["seed"] == 1
    # A rerun with another seed reuses the file as is.
    report = SourceReport("s")
    again = resolve_splits(keys, source="s", seed=99, report=report, split_file=sf)
    assert again == first and not report.issues
    # A new key is assigned, flagged and written; old assignments are untouched.
    report = SourceReport("s")
    more = resolve_splits([*keys, "new"], source="s", seed=1, report=report, split_file=sf)
    assert {k: more[k] for k in keys} == first and more["new"] in ("train", "validation", "test")
    assert report.flagged[0].item == "new"
    assert json.loads(sf.read_text())["sources"]["s"]["assignments"]["new"] == more["new"]
    # Other sources share the file without disturbing each other.
    resolve_splits(["x"], source="t", seed=1, report=SourceReport("t"), split_file=sf)
    assert set(json.loads(sf.read_text())["sources"]) == {"s", "t"}


def test_official_splits_kept_and_validation_carved_from_train():
    keys = [f"tr{i}" for i in range(40)] + [f"te{i}" for i in range(5)]
    official = {k: ("test" if k.startswith("te") else "train") for k in keys}
    out = resolve_splits(keys, source="s", seed=0, report=SourceReport("s"), official=official)
    assert all(out[k] == "test" for k in keys if k.startswith("te"))
    train_side = [out[k] for k in keys if k.startswith("tr")]
    assert "test" not in train_side and train_side.count("validation") == 5  # 0.1 / 0.8 of 40
    with_val = {**official, "tr0": "validation"}
    out = resolve_splits(keys, source="s", seed=0, report=SourceReport("s"), official=with_val)
    assert out == with_val


def test_corrupt_split_file_is_a_clear_error(tmp_path):
    sf = tmp_path / "splits.json"
    sf.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        resolve_splits(["a"], source="s", seed=0, report=SourceReport("s"), split_file=sf)
