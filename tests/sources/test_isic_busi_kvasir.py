"""ISIC 2016, BUSI and Kvasir adapters on fixtures that mimic their public layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfm_hf.sources import load_source

H, W = 36, 44


def test_isic2016_official_splits_and_bad_inputs(tmp_path, fx, rng):
    root = tmp_path / "isic"
    tr, trg = root / "ISBI2016_ISIC_Part1_Training_Data", root / "ISBI2016_ISIC_Part1_Training_GroundTruth"
    te, teg = root / "ISBI2016_ISIC_Part1_Test_Data", root / "ISBI2016_ISIC_Part1_Test_GroundTruth"
    masks = {}
    for i in range(10):
        fx.write(tr / f"ISIC_{i:07d}.jpg", fx.rgb(rng, H, W))
        masks[i] = fx.rect(H, W, 2, 10 + i, 3, 30)
        fx.write(trg / f"ISIC_{i:07d}_Segmentation.png", masks[i])
    for i in range(100, 104):
        fx.write(te / f"ISIC_{i:07d}.jpg", fx.rgb(rng, H, W))
        fx.write(teg / f"ISIC_{i:07d}_Segmentation.png", fx.rect(H, W, 5, 20, 5, 20))
    fx.write(te / "ISIC_0000200.png", fx.grey(rng, H, W, dtype=np.uint16))  # a 16-bit image
    fx.write(teg / "ISIC_0000200_Segmentation.png", fx.rect(H, W, 1, 2, 1, 2))
    fx.truncate(fx.write(te / "ISIC_0000300.jpg", fx.rgb(rng, H, W)))  # corrupt
    fx.write(teg / "ISIC_0000300_Segmentation.png", fx.rect(H, W, 1, 2, 1, 2))
    fx.write(tr / "ISIC_0000400.jpg", fx.rgb(rng, H, W))  # no ground truth

    sf = tmp_path / "splits.json"
    recs, report = load_source("isic2016", str(root), seed=0, split_file=str(sf))
    by_id = {r.image_id: r for r in recs}
    for r in recs:
        r.validate()
        assert r.modality == "dermoscopy" and r.task == "segmentation"
    assert all(by_id[f"isic2016/ISIC_{i:07d}"].split == "test" for i in range(100, 104))
    train_side = [by_id[f"isic2016/ISIC_{i:07d}"].split for i in range(10)]
    assert "test" not in train_side and train_side.count("validation") == 1  # 10 * 0.1/0.8 -> 1
    assert np.array_equal(by_id["isic2016/ISIC_0000003"].mask, masks[3])
    deep = by_id["isic2016/ISIC_0000200"].image
    assert deep.dtype == np.uint16 and deep.shape == (H, W, 3)
    skipped = {i.item.split("/")[-1]: i.reason for i in report.skipped}
    assert "truncated" in skipped["ISIC_0000300.jpg"] and "without a mask" in skipped["ISIC_0000400.jpg"]
    assert json.loads(sf.read_text())["sources"]["isic2016"]["official"] is True
    again, _ = load_source("isic2016", str(root), seed=1, split_file=str(sf))
    assert [(r.image_id, r.split) for r in again] == [(r.image_id, r.split) for r in recs]
    # fractions only shape the validation carve-out of the official training set
    half = load_source("isic2016", str(root), fractions="0.5/0.5/0")[0]
    assert sum(r.split == "validation" for r in half) == 5 and sum(r.split == "test" for r in half) == 5


def test_isic2016_missing_layout_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="ISBI2016_ISIC_Part1"):
        load_source("isic2016", str(tmp_path))
    (tmp_path / "ISBI2016_ISIC_Part1_Training_Data").mkdir()
    with pytest.raises(FileNotFoundError, match="GroundTruth/ is missing"):
        load_source("isic2016", str(tmp_path))


def test_busi_classes_multi_masks_normal_flagged(tmp_path, fx, rng):
    root = tmp_path / "Dataset_BUSI_with_GT"
    grey = fx.grey(rng, H, W)
    fx.write(root / "benign" / "benign (1).png", np.repeat(grey[..., None], 3, axis=2))  # RGB-stored grey
    fx.write(root / "benign" / "benign (1)_mask.png", fx.rect(H, W, 2, 8, 2, 8))
    fx.write(root / "benign" / "benign (4).png", fx.grey(rng, H, W, dtype=np.uint16))  # 16-bit
    fx.write(root / "benign" / "benign (4)_mask.png", fx.rect(H, W, 2, 8, 2, 8))
    fx.write(root / "benign" / "benign (4)_mask_1.png", fx.rect(H, W, 20, 30, 30, 40))
    fx.write(root / "malignant" / "malignant (1).png", fx.grey(rng, H, W))
    fx.write(root / "malignant" / "malignant (1)_mask.png", fx.rect(H, W, 10, 20, 10, 20))
    (root / "malignant" / "malignant (2).png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # corrupt
    fx.write(root / "malignant" / "malignant (2)_mask.png", fx.rect(H, W, 10, 20, 10, 20))
    fx.write(root / "normal" / "normal (1).png", fx.grey(rng, H, W))
    fx.write(root / "normal" / "normal (1)_mask.png", np.zeros((H, W), bool))
    recs, report = load_source("busi", str(tmp_path))
    by_id = {r.image_id: r for r in recs}
    assert set(by_id) == {"busi/benign (1)", "busi/benign (4)", "busi/malignant (1)", "busi/normal (1)"}
    for r in recs:
        r.validate()
    assert by_id["busi/benign (1)"].image.ndim == 2 and np.array_equal(by_id["busi/benign (1)"].image, grey)
    assert by_id["busi/benign (4)"].bbox == [2, 2, 40, 30] and by_id["busi/benign (4)"].image.dtype == np.uint16
    assert by_id["busi/normal (1)"].bbox is None and by_id["busi/normal (1)"].meta["class"] == "normal"
    assert any("empty mask" in i.reason and "normal (1)" in i.item for i in report.flagged)
    assert any("malignant (2)" in i.item for i in report.skipped)
    assert {r.split for r in load_source("busi", str(tmp_path), fractions="0/1/0")[0]} == {"validation"}


def test_kvasir_jpeg_masks_and_provided_boxes(tmp_path, fx, rng):
    base = tmp_path / "Kvasir-SEG"
    boxes = {}
    truth = {}
    for i, name in enumerate(["cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0roawvklrq0799vmjorwfv"]):
        fx.write(base / "images" / f"{name}.jpg", fx.rgb(rng, H, W))
        m = fx.rect(H, W, 4 + i, 20, 6, 30)
        truth[name] = m
        fx.write(base / "masks" / f"{name}.jpg", m, quality=75)
        boxes[name] = {"height": H, "width": W, "bbox": [{"label": "polyp", "xmin": 6, "ymin": 4 + i,
                                                          "xmax": 30, "ymax": 20}]}
    boxes["cju0roawvklrq0799vmjorwfv"]["bbox"][0]["xmin"] = 0  # disagrees with the mask by 6 px
    fx.write(base / "images" / "deep16.png", fx.rgb(rng, H, W).astype(np.uint16) * 257)  # 16-bit RGB
    fx.write(base / "masks" / "deep16.jpg", fx.rect(H, W, 1, 5, 1, 5), quality=75)
    fx.truncate(fx.write(base / "images" / "broken.jpg", fx.rgb(rng, H, W)))
    fx.write(base / "masks" / "broken.jpg", fx.rect(H, W, 1, 5, 1, 5))
    (base / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    recs, report = load_source("kvasir", str(tmp_path))
    by_id = {r.image_id: r for r in recs}
    for r in recs:
        r.validate()
        assert r.modality == "endoscopy"
    for name, m in truth.items():
        assert np.array_equal(by_id[f"kvasir/{name}"].mask, m)  # JPEG noise removed by the 127 threshold
    assert by_id["kvasir/cju0qkwl35piu0993l0dewei2"].meta["provided_boxes"] == [[6, 4, 30, 20]]
    assert by_id["kvasir/deep16"].image.dtype == np.uint16 and by_id["kvasir/deep16"].image.shape == (H, W, 3)
    assert [i.item for i in report.flagged] == ["cju0roawvklrq0799vmjorwfv"]
    assert "differs from the mask's box" in report.flagged[0].reason
    assert any("broken" in i.item and "truncated" in i.reason for i in report.skipped)
    # box_tolerance is honoured
    _, report = load_source("kvasir", str(tmp_path), box_tolerance="10")
    assert not report.flagged
    # threshold: a light-grey JPEG mask region counts at 127 but not at 230
    light = np.zeros((H, W), np.uint8)
    light[10:20, 10:20] = 200
    fx.write(base / "masks" / "deep16.jpg", light, quality=95)
    got = {r.image_id: r.bbox for r in load_source("kvasir", str(tmp_path))[0]}
    assert got["kvasir/deep16"] == [10, 10, 20, 20]
    got = {r.image_id: r.bbox for r in load_source("kvasir", str(tmp_path), threshold="230")[0]}
    assert got["kvasir/deep16"] is None
    # fractions: the seeded split follows the requested proportions
    assert {r.split for r in load_source("kvasir", str(tmp_path), fractions="0/0/1")[0]} == {"test"}
