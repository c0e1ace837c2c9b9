"""The embedded demo set's contract (issue: foundation)."""

from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest
from scipy import ndimage as ndi

from medfm_hf import MODALITIES
from medfm_hf.cli import main
from medfm_hf.records import mask_to_bbox
from medfm_hf.sources import load_source
from medfm_hf.sources.demo import load_demo

RGB = {"dermoscopy", "endoscopy", "fundus", "pathology"}


@pytest.fixture(scope="module")
def records():
    return load_demo()


def test_all_modalities_and_split_counts(records):
    for m in MODALITIES:
        by = [r for r in records if r.modality == m]
        assert sum(r.split == "test" for r in by) >= 6, m
        assert sum(r.split == "train" for r in by) >= 6, m
        assert sum(r.split == "validation" for r in by) >= 2, m
    assert {r.modality for r in records} == set(MODALITIES)


def test_ids_unique_and_stable(records):
    ids = [r.image_id for r in records]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("demo/") for i in ids)


def test_images_and_masks(records):
    for r in records:
        r.validate()
        assert r.image.dtype == np.uint8 and r.image.shape[:2] == (256, 256)
        assert (r.image.ndim == 3) == (r.modality in RGB), r.image_id
        assert r.mask.dtype == bool and r.mask.shape == (256, 256)
        # a lesion is one non-trivial connected region, fully inside the image, and its box is the mask's box
        assert 60 < r.mask.sum() < 0.2 * r.mask.size, r.image_id
        assert ndi.label(r.mask)[1] == 1, r.image_id
        assert r.bbox == mask_to_bbox(r.mask)
        x0, y0, x1, y1 = r.bbox
        assert r.mask[y0:y1, x0:x1].sum() == r.mask.sum()


def test_lesion_is_visible_in_image(records):
    # the mask marks where the image was changed: intensity inside differs from a ring around it
    for r in records:
        img = r.image.astype(float) if r.image.ndim == 3 else r.image.astype(float)[..., None]
        ring = ndi.binary_dilation(r.mask, iterations=6) & ~ndi.binary_dilation(r.mask, iterations=2)
        diff = np.abs(img[r.mask].mean(axis=0) - img[ring].mean(axis=0)).max()
        assert diff > 5.0, (r.image_id, diff)


def test_vlm_fields(records):
    for r in records:
        assert r.question and r.question.endswith("?")
        assert len(r.options) == 4 and len(set(r.options)) == 4
        assert r.answer in "ABCD"
        assert r.caption and r.modality != "" and len(r.caption.split()) >= 6
        assert r.target_bbox == [float(v) for v in r.bbox]
    # answers are not all the same letter (options are shuffled)
    assert len({r.answer for r in records}) == 4


def test_location_answer_matches_mask(records):
    for r in records:
        if r.meta["question_type"] != "location":
            continue
        ys, xs = np.nonzero(r.mask)
        expected = ("upper" if (r.bbox[1] + r.bbox[3]) / 2 < 128 else "lower") + " " + (
            "left" if (r.bbox[0] + r.bbox[2]) / 2 < 128 else "right")
        assert r.options[ord(r.answer) - ord("A")] == expected
        assert ys.size > 0


def test_window_recorded_for_medical_sources(records):
    for r in records:
        if r.meta["background"].startswith("pydicom"):
            assert {"center", "width"} <= set(r.meta["window"]), r.image_id
        assert r.meta["licence"]


def test_deterministic(records):
    again = load_demo(split="test", modalities=["ct", "fundus"])
    first = [r for r in records if r.split == "test" and r.modality in ("ct", "fundus")]
    assert [r.image_id for r in again] == [r.image_id for r in first]
    for a, b in zip(again, first):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_load_demo_returns_copies():
    a = load_demo(split="test", modalities=["ct"])
    a[0].image[:] = 0
    b = load_demo(split="test", modalities=["ct"])
    assert b[0].image.any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        load_demo(split="dev")
    with pytest.raises(ValueError, match="unknown modalities"):
        load_demo(modalities=["petct"])


def test_registered_as_source():
    recs, report = load_source("demo")
    assert len(recs) == 140 and not report.issues


def test_demo_data_cli_byte_identical(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["demo-data", "--out", str(a)]) == 0
    out = capsys.readouterr().out
    for m in MODALITIES:
        assert m in out
    assert main(["demo-data", "--out", str(b)]) == 0
    cmp = filecmp.dircmp(a, b)
    files = [os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs]
    assert len(files) == 4
    for f in files:
        assert filecmp.cmp(a / f, b / f, shallow=False), f
    assert not cmp.diff_files


def test_demo_data_loads_with_datasets(tmp_path):
    from datasets import load_dataset

    out = tmp_path / "demo"
    main(["demo-data", "--out", str(out)])
    ds = load_dataset(str(out), "clean")
    assert set(ds) == {"train", "validation", "test"}
    assert len(ds["test"]) == 60
    row = ds["test"][0]
    mask = np.array(row["mask"]) > 127
    assert mask_to_bbox(mask) == row["bbox"]
    assert json.loads(row["meta"])["licence"]
