"""The generic folder source: pairing, conversions, every bad-input case, split determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfm_hf.records import mask_to_bbox
from medfm_hf.sources import load_source, parse_sources_arg
from medfm_hf.sources.base import SourceReport
from medfm_hf.sources.folder import load_folder

H, W = 40, 48


@pytest.fixture
def messy(tmp_path, fx, rng):
    """images/ + masks/ with one of every bad case next to good pairs."""
    root = tmp_path / "data"
    img, msk = root / "images", root / "masks"
    truth = {}
    for i in range(8):
        fx.write(img / f"ok{i}.png", fx.rgb(rng))
        m = fx.rect(H, W, 2 + i, 12 + i, 3, 20)
        fx.write(msk / f"ok{i}.png", m)
        truth[f"ok{i}"] = m
    # two masks for one image -> union
    fx.write(img / "multi.png", fx.rgb(rng))
    a, b = fx.rect(H, W, 1, 5, 1, 5), fx.rect(H, W, 30, 38, 40, 46)
    fx.write(msk / "multi.png", a)
    fx.write(msk / "multi_1.png", b)
    truth["multi"] = a | b
    # 16-bit grey image
    deep = fx.grey(rng, dtype=np.uint16)
    fx.write(img / "deep.png", deep)
    fx.write(msk / "deep.png", fx.rect(H, W, 5, 9, 5, 9))
    # JPEG mask: thresholded at 127
    jm = fx.rect(H, W, 10, 30, 10, 30)
    fx.write(img / "jpegmask.png", fx.rgb(rng))
    fx.write(msk / "jpegmask.jpg", jm, quality=70)
    truth["jpegmask"] = jm
    # bad cases
    fx.truncate(fx.write(img / "truncated.jpg", fx.rgb(rng)))
    fx.write(msk / "truncated.png", jm)
    (img / "corrupt.png").write_bytes(b"this is not an image")
    fx.write(msk / "corrupt.png", jm)
    fx.write(img / "mismatch.png", fx.rgb(rng))
    fx.write(msk / "mismatch.png", np.zeros((H + 2, W), bool))
    fx.write(img / "empty.png", fx.rgb(rng))
    fx.write(msk / "empty.png", np.zeros((H, W), bool))
    nb = (fx.rect(H, W, 4, 20, 4, 20) * 255).astype(np.uint8)
    nb[4, 4] = 180  # lossless, three values: thresholded + flagged
    fx.write(img / "nonbinary.png", fx.rgb(rng))
    fx.write(msk / "nonbinary.png", nb)
    fx.write(img / "labelmap.png", fx.rgb(rng))
    fx.write(msk / "labelmap.png", np.array([0, 1, 2], np.uint8)[rng.integers(0, 3, (H, W))])
    fx.write(img / "nomask.png", fx.rgb(rng))
    fx.write(msk / "orphan.png", jm)
    fx.write(img / "dup.png", fx.rgb(rng))
    fx.write(img / "dup.jpg", fx.rgb(rng))
    fx.write(msk / "dup.png", jm)
    rgba = np.dstack([fx.rgb(rng), np.full((H, W), 7, np.uint8)])
    from PIL import Image

    Image.fromarray(rgba, "RGBA").save(img / "alpha.png")
    fx.write(msk / "alpha.png", jm)
    (img / "README.txt").write_text("notes")
    return root, truth, deep


def test_folder_records_and_bad_input_report(messy):
    root, truth, deep = messy
    report = SourceReport("folder")
    recs = load_folder(str(root), modality="dermoscopy", report=report, seed=3)
    by_id = {r.image_id: r for r in recs}
    for r in recs:
        r.validate()
    expected_ok = {f"folder/ok{i}" for i in range(8)} | {"folder/multi", "folder/deep", "folder/jpegmask",
                                                        "folder/empty", "folder/nonbinary", "folder/alpha"}
    assert set(by_id) == expected_ok
    for stem, m in truth.items():
        assert np.array_equal(by_id[f"folder/{stem}"].mask, m), stem
        assert by_id[f"folder/{stem}"].bbox == mask_to_bbox(m)
    assert by_id["folder/multi"].bbox == [1, 1, 46, 38]
    # 16-bit kept (a dermoscopy record is RGB, so the grey values are replicated losslessly)
    d = by_id["folder/deep"].image
    assert d.dtype == np.uint16 and np.array_equal(d[..., 0], deep) and np.array_equal(d[..., 2], deep)
    assert by_id["folder/alpha"].image.shape == (H, W, 3)
    assert by_id["folder/empty"].bbox is None
    skipped = {i.item.split("/")[-1]: i.reason for i in report.skipped}
    flagged = {i.item.split("/")[-1]: i.reason for i in report.flagged}
    assert all(not i.item.startswith("/") for i in report.issues)  # items are relative to the dataset
    assert "truncated" in skipped["truncated.jpg"]
    assert "not a readable image" in skipped["corrupt.png"]
    assert "mask mismatch.png is 48x42" in skipped["mismatch.png"]
    assert "label map" in skipped["labelmap.png"]
    assert "without a mask" in skipped["nomask.png"]
    assert "mask without an image" in skipped["orphan.png"]
    assert "duplicate stem" in skipped["dup.png"] and "duplicate stem" in skipped["dup.jpg"]
    assert "not an image file" in skipped["README.txt"]
    assert "empty mask" in flagged["empty.png"]
    assert "non-binary" in flagged["nonbinary.png"]
    # nothing dropped silently: every input image is a record or a skip
    accounted = {r.meta["image_file"] for r in recs} | {i.item for i in report.skipped}
    assert {f"images/{p.name}" for p in (root / "images").iterdir()} <= accounted


def test_same_folder_layout_with_suffix_and_grey_modality(tmp_path, fx, rng):
    root = tmp_path / "isic_like"
    grey3 = np.repeat(fx.grey(rng)[..., None], 3, axis=2)
    fx.write(root / "a.png", grey3)
    fx.write(root / "a_Segmentation.png", fx.rect(H, W, 1, 9, 1, 9))
    fx.write(root / "b.png", grey3)
    fx.write(root / "b_Segmentation.png", fx.rect(H, W, 3, 9, 1, 9))
    fx.write(root / "b_Segmentation_2.png", fx.rect(H, W, 20, 30, 20, 30))
    recs, report = load_source("folder", str(root), modality="ultrasound", mask_suffix="_Segmentation")
    assert [r.image_id for r in recs] == ["folder/a", "folder/b"]
    assert recs[0].image.ndim == 2 and np.array_equal(recs[0].image, grey3[..., 0])
    assert recs[1].bbox == [1, 3, 30, 30]
    assert not report.issues


def test_unknown_or_missing_modality_and_options_are_errors(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="unknown modality 'retina'"):
        load_source("folder", str(tmp_path / "x"), modality="retina")
    with pytest.raises(ValueError, match="needs a modality"):
        load_source("folder", str(tmp_path / "x"))
    with pytest.raises(ValueError, match="unknown option"):
        load_source("folder", str(tmp_path / "x"), modality="ct", mask_sufix="_m")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_source("folder", str(tmp_path / "nope"), modality="ct")


def test_sources_arg_and_split_file_reuse(messy, tmp_path):
    root = messy[0]
    ((name, path, opts),) = parse_sources_arg(f"folder={root}:pathology")
    sf = tmp_path / "out" / "splits.json"
    first, _ = load_source(name, path, seed=5, split_file=str(sf), **opts)
    assert {r.modality for r in first} == {"pathology"}
    recorded = json.loads(sf.read_text())["sources"]["folder"]["assignments"]
    assert {r.image_id.split("/")[1]: r.split for r in first}.items() <= recorded.items()
    # same seed without a file: same draw (deterministic)
    again, _ = load_source(name, path, seed=5, **opts)
    assert [(r.image_id, r.split) for r in again] == [(r.image_id, r.split) for r in first]
    # a different seed with the file: the file wins, nothing is re-drawn
    reused, _ = load_source(name, path, seed=6, split_file=str(sf), **opts)
    assert [(r.image_id, r.split) for r in reused] == [(r.image_id, r.split) for r in first]
    redrawn, _ = load_source(name, path, seed=6, **opts)
    assert [r.split for r in redrawn] != [r.split for r in first]


def test_folder_options_images_masks_threshold_fractions(tmp_path, fx, rng):
    root = tmp_path / "d"
    grey_mask = np.zeros((H, W), np.uint8)
    grey_mask[5:15, 5:15] = 255
    grey_mask[20:30, 20:30] = 200  # a lighter region: foreground at threshold 127, not at 220
    for i in range(10):
        fx.write(root / "scans" / f"s{i}.png", fx.grey(rng))
        fx.write(root / "labels" / f"s{i}.jpg", grey_mask, quality=95)
    recs, report = load_source("folder", str(root), modality="ct", images="scans", masks="labels")
    assert len(recs) == 10 and recs[0].bbox == [5, 5, 30, 30] and not report.issues
    recs, _ = load_source("folder", str(root), modality="ct", images="scans", masks="labels", threshold="220")
    assert recs[0].bbox == [5, 5, 15, 15]
    recs, _ = load_source("folder", str(root), modality="ct", images="scans", masks="labels", fractions="0.5/0.5/0")
    assert sorted(r.split for r in recs) == ["train"] * 5 + ["validation"] * 5
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_source("folder", str(root), modality="ct", images="nope")
    with pytest.raises(ValueError, match="threshold='x' must be an integer"):
        load_source("folder", str(root), modality="ct", images="scans", masks="labels", threshold="x")


def test_sub_folders_and_broken_or_looping_links_are_reported_not_dropped(tmp_path, fx, rng):
    root = tmp_path / "linked"
    fx.write(root / "images" / "a.png", fx.grey(rng))
    fx.write(root / "masks" / "a.png", fx.rect(H, W, 1, 9, 1, 9))
    fx.write(root / "images" / "sub" / "nested.png", fx.grey(rng))
    fx.write(root / "masks" / "loopA.png", fx.rect(H, W, 1, 9, 1, 9))
    (root / "images" / "loopA.png").symlink_to(root / "images" / "loopB.png")
    (root / "images" / "loopB.png").symlink_to(root / "images" / "loopA.png")
    (root / "images" / "gone.png").symlink_to(root / "nowhere.png")
    recs, report = load_source("folder", str(root), modality="ct")
    assert [r.image_id for r in recs] == ["folder/a"]
    reasons = {i.item: i.reason for i in report.skipped}
    assert "sub-folder" in reasons["images/sub"]
    for name in ("images/loopA.png", "images/loopB.png", "images/gone.png"):
        assert "symbolic link that leads nowhere" in reasons[name], reasons
