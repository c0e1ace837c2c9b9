"""mask2box and resize: functions against reference computations, and their CLI subcommands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from skimage.measure import label as sk_label
from skimage.measure import regionprops

from medfm_hf.cli import main
from medfm_hf.sources._common import read_image
from medfm_hf.sources.base import SourceReport
from medfm_hf.tools import masks_to_boxes, resize_pairs, write_boxes


def _sk_box(mask: np.ndarray) -> list[int]:
    (p,) = regionprops(mask.astype(np.uint8))
    r0, c0, r1, c1 = p.bbox
    return [c0, r0, c1, r1]


@pytest.fixture
def mask_dir(tmp_path, fx, rng):
    d = tmp_path / "masks"
    masks = {}
    for i in range(4):
        m = np.zeros((50, 60), bool)
        for _ in range(3):  # several blobs per mask
            y, x = rng.integers(0, 40), rng.integers(0, 50)
            m[y : y + rng.integers(2, 10), x : x + rng.integers(2, 10)] = True
        fx.write(d / f"m{i}.png", m)
        masks[f"m{i}.png"] = m
    fx.write(d / "empty.png", np.zeros((50, 60), bool))
    (d / "broken.png").write_bytes(b"garbage")
    return d, masks


def test_masks_to_boxes_matches_skimage(mask_dir):
    d, masks = mask_dir
    report = SourceReport("mask2box")
    rows = masks_to_boxes(d, report=report)
    by_file = {r["file"]: r for r in rows}
    for name, m in masks.items():
        r = by_file[name]
        assert [r["x0"], r["y0"], r["x1"], r["y1"]] == _sk_box(m)
        assert r["area"] == m.sum() and (r["width"], r["height"]) == (60, 50)
    assert by_file["empty.png"]["x0"] is None and by_file["empty.png"]["area"] == 0
    assert [i.item for i in report.skipped] == ["broken.png"]
    assert "empty mask" in report.flagged[0].reason

    comp = masks_to_boxes(d, per_component=True)
    for name, m in masks.items():
        lab = sk_label(m, connectivity=2)
        ref = sorted(_sk_box(lab == k) for k in range(1, lab.max() + 1))
        got = sorted([r["x0"], r["y0"], r["x1"], r["y1"]] for r in comp if r["file"] == name)
        assert got == ref


def test_write_boxes_json_and_csv(mask_dir, tmp_path):
    rows = masks_to_boxes(mask_dir[0])
    write_boxes(rows, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text()) == rows
    write_boxes(rows, tmp_path / "b.csv")
    with open(tmp_path / "b.csv", newline="") as fh:
        back = list(csv.DictReader(fh))
    assert [int(b["x1"]) if b["x1"] else None for b in back] == [r["x1"] for r in rows]
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        write_boxes(rows, tmp_path / "b.txt")


def test_resize_pairs_area_nearest_and_bit_depth(tmp_path, fx, rng):
    img_dir, msk_dir = tmp_path / "img", tmp_path / "msk"
    img8 = fx.rgb(rng, 64, 64)
    img16 = fx.grey(rng, 64, 64, dtype=np.uint16)
    mask = np.zeros((64, 64), bool)
    mask[10:41, 5:30] = True
    mask[50, 50] = True  # odd pixel: nearest-neighbour keeps it only if sampled
    fx.write(img_dir / "a.png", img8)
    fx.write(msk_dir / "a_mask.png", mask)
    fx.write(img_dir / "b.png", img16)
    fx.write(msk_dir / "b_mask.jpg", mask, quality=90)
    fx.write(img_dir / "c.png", fx.rgb(rng, 16, 16))  # upscaled
    fx.write(msk_dir / "c_mask.png", np.ones((16, 16), bool))
    fx.write(img_dir / "d.png", fx.rgb(rng, 10, 10))
    fx.write(msk_dir / "d_mask.png", np.ones((12, 10), bool))  # size mismatch
    report = SourceReport("resize")
    rows = resize_pairs(img_dir, msk_dir, size=32, out_dir=tmp_path / "out", mask_suffix="_mask", report=report)
    assert [r["stem"] for r in rows] == ["a", "b", "c"]
    assert "d.png" in [i.item.split("/")[-1] for i in report.skipped]
    a = read_image(tmp_path / "out/images/a.png")
    block_mean = img8.reshape(32, 2, 32, 2, 3).astype(float).mean(axis=(1, 3))
    assert a.shape == (32, 32, 3) and np.abs(a.astype(float) - block_mean).max() <= 0.5 + 1e-9
    am = read_image(tmp_path / "out/masks/a.png")
    assert set(np.unique(am)) <= {0, 255} and np.array_equal(am > 0, mask[::2, ::2])
    b = read_image(tmp_path / "out/images/b.png")
    assert b.dtype == np.uint16
    ref16 = img16.reshape(32, 2, 32, 2).astype(float).mean(axis=(1, 3))
    assert np.abs(b.astype(float) - ref16).max() <= 0.5 + 1e-9
    c = read_image(tmp_path / "out/images/c.png")
    assert c.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="positive"):
        resize_pairs(img_dir, msk_dir, size=0, out_dir=tmp_path / "o2")


def test_cli_mask2box_and_resize(mask_dir, tmp_path, fx, rng, capsys):
    d, masks = mask_dir
    assert main(["mask2box", str(d), "--out", str(tmp_path / "boxes.csv"), "--per-component"]) == 0
    out = capsys.readouterr().out
    assert "boxes for 5 masks" in out and "broken.png" in out
    assert main(["mask2box", str(d), "--out", str(tmp_path / "boxes.xml")]) == 2
    assert ".json or .csv" in capsys.readouterr().err
    # --threshold changes which JPEG-noise pixels count
    jd = tmp_path / "jm"
    fx.write(jd / "g.png", np.array([[0, 100, 200], [0, 0, 0]], np.uint8))  # non-binary, lossless
    main(["mask2box", str(jd), "--out", str(tmp_path / "t.json"), "--threshold", "50"])
    assert json.loads((tmp_path / "t.json").read_text())[0]["x0"] == 1
    main(["mask2box", str(jd), "--out", str(tmp_path / "t.json"), "--threshold", "150"])
    assert json.loads((tmp_path / "t.json").read_text())[0]["x0"] == 2

    imgs = tmp_path / "imgs"
    for name in masks:
        fx.write(imgs / name, fx.rgb(rng, 50, 60))
    assert main(["resize", str(imgs), str(d), "--size", "25", "--out", str(tmp_path / "r")]) == 0
    assert "resized 4 pairs to 25x25" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "r/masks").iterdir()) == sorted(masks)
    assert read_image(tmp_path / "r/images/m0.png").shape == (25, 25, 3)
    # --mask-suffix
    sfx = tmp_path / "sfx"
    fx.write(sfx / "m0_seg.png", masks["m0.png"])
    assert main(["resize", str(imgs), str(sfx), "--size", "10", "--out", str(tmp_path / "r2"),
                 "--mask-suffix", "_seg"]) == 0
    assert (tmp_path / "r2/masks/m0.png").exists()
