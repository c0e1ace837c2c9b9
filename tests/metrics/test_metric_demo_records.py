"""The metrics on the embedded demo records: their boxes, options and captions as models would print them."""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.metrics import bleu_scores, grounding_scores, segmentation_scores, vqa_scores

demo = pytest.importorskip("medfm_hf.sources.demo")


@pytest.fixture(scope="module")
def records():
    return demo.load_demo(split="test")


def _printed(box: list[float], size: tuple[int, int], fmt: str) -> str:
    """The box as a model using ``fmt`` would print it (0-1000 rounded to integers, fractions to 3 digits)."""
    w, h = size
    x0, y0, x1, y1 = box
    if fmt.endswith("norm"):
        vals = [round(x0 / w, 3), round(y0 / h, 3), round(x1 / w, 3), round(y1 / h, 3)]
    elif fmt.endswith("1000"):
        vals = [round(x0 / w * 1000), round(y0 / h * 1000), round(x1 / w * 1000), round(y1 / h * 1000)]
    else:
        vals = [round(v) for v in box]
    if fmt.startswith("yxyx"):
        vals = [vals[1], vals[0], vals[3], vals[2]]
    return f"The finding is at {vals}."


def test_demo_boxes_in_every_convention(records):
    recs = [r for r in records if r.target_bbox is not None]
    assert len(recs) >= 10
    sizes = [(r.image.shape[1], r.image.shape[0]) for r in recs]
    for fmt in ("xyxy_norm", "xyxy_1000", "xyxy_pixel", "yxyx_norm", "yxyx_1000", "yxyx_pixel"):
        preds = [_printed(r.target_bbox, s, fmt) for r, s in zip(recs, sizes)]
        out = grounding_scores(preds, [r.target_bbox for r in recs], sizes, box_format=fmt)
        assert out["num_unparsable"] == 0
        assert min(out["per_sample_iou"]) > 0.9, fmt  # only printing precision is lost
        assert out["acc@0.75"] == 1.0


def test_demo_vqa_letters_and_option_texts(records):
    recs = [r for r in records if r.options]
    assert len(recs) >= 10
    letters = [r.answer for r in recs]
    texts = [r.options["ABCDEFGHIJ".index(r.answer)] for r in recs]
    opts = [r.options for r in recs]
    assert vqa_scores([f"The answer is ({a}).".lower() for a in letters], letters, opts)["accuracy"] == 1.0
    assert vqa_scores([f"{t}." for t in texts], letters, opts)["accuracy"] == 1.0
    wrong = ["ABCDEFGHIJ"[("ABCDEFGHIJ".index(a) + 1) % len(o)] for a, o in zip(letters, opts)]
    assert vqa_scores(wrong, letters, opts)["accuracy"] == 0.0


def test_demo_masks_and_captions(records):
    masks = [r.mask for r in records if r.mask is not None]
    shifted = [np.roll(m, 3, axis=1) for m in masks]
    iou = segmentation_scores(shifted, masks)
    assert 0.3 < iou["iou"] < 1.0 and segmentation_scores(masks, masks)["iou"] == 1.0
    caps = [r.caption for r in records if r.caption]
    assert bleu_scores(caps, [[c] for c in caps], tokenizer="python")["bleu"] == pytest.approx(1.0)
