"""The box parser on a table of realistic VLM outputs; grounding accuracy and its denominators."""

from __future__ import annotations

import math

import pytest

from medfm_hf.metrics import BOX_FORMATS, box_iou, convert_box, grounding_scores, parse_box

SQ = (256, 256)  # the demo images
B = [64.0, 32.0, 192.0, 128.0]  # the same box in every convention below: norm [.25 .125 .75 .5]
WIDE = (500, 400)  # (width, height)
W = [100.0, 40.0, 350.0, 300.0]  # norm [.2 .1 .7 .75]; 0-1000 xy [200 100 700 750]

# (model output, image size, box_format, expected pixel box or None, expected format or None)
CASES = [
    # --- Gemini / MedGemma: JSON box_2d, y first, 0-1000
    ('```json\n[\n  {"box_2d": [125, 250, 500, 750], "label": "tumor"}\n]\n```', SQ, "auto", B, "yxyx_1000"),
    ('{"box_2d": [125, 250, 500, 750]}', SQ, "auto", B, "yxyx_1000"),
    ('Here is the box:\n```json\n[{"label": "nodule", "box_2d": [125,250,500,750]}]\n```', SQ, "auto", B, "yxyx_1000"),
    ("[{'box_2d': [125, 250, 500, 750], 'label': 'lesion'}]", SQ, "auto", B, "yxyx_1000"),
    ("box_2d: [125, 250, 500, 750]", SQ, "auto", B, "yxyx_1000"),
    ('[{"box_2d": [125, 250, 500, 750], "label": "a"}, {"box_2d": [0, 0, 10, 10], "label": "b"}]', SQ, "auto", B,
     "yxyx_1000"),
    ("The polyp is located at [125, 250, 500, 750].", SQ, "yxyx_1000", B, "yxyx_1000"),
    ('{"box_2d": [100, 200, 750, 700]}', WIDE, "auto", W, "yxyx_1000"),
    # --- fractions of the image side, x first
    ("[0.25, 0.125, 0.75, 0.5]", SQ, "auto", B, "xyxy_norm"),
    ("The bounding box of the lesion is [0.25, 0.125, 0.75, 0.50].", SQ, "auto", B, "xyxy_norm"),
    ("0.25, 0.125, 0.75, 0.5", SQ, "auto", B, "xyxy_norm"),
    ("(0.25, 0.125, 0.75, 0.5)", SQ, "auto", B, "xyxy_norm"),
    ("The nodule is located at [0.25, 0.12, 0.75, 0.5]", SQ, "auto", [64.0, 30.72, 192.0, 128.0], "xyxy_norm"),
    ("[0.75, 0.5, 0.25, 0.125]", SQ, "auto", B, "xyxy_norm"),  # reversed corners
    ("Bounding box: .25 .125 .75 .5", SQ, "auto", B, "xyxy_norm"),
    ("[0.2, 0.1, 0.7, 0.75]", WIDE, "auto", W, "xyxy_norm"),
    ("[0.125, 0.25, 0.5, 0.75]", SQ, "yxyx_norm", B, "yxyx_norm"),
    # --- pixels, x first
    ("[64, 32, 192, 128]", SQ, "auto", B, "xyxy_pixel"),
    ("Bounding box: x_min=64, y_min=32, x_max=192, y_max=128", SQ, "auto", B, "xyxy_pixel"),
    ('{"bbox": [64, 32, 192, 128]}', SQ, "auto", B, "xyxy_pixel"),
    ('{"x_min": 64, "y_min": 32, "x_max": 192, "y_max": 128}', SQ, "auto", B, "xyxy_pixel"),
    ("The tumour spans from (64, 32) to (192, 128).", SQ, "auto", B, "xyxy_pixel"),
    ("top-left (64, 32), bottom-right (192, 128)", SQ, "auto", B, "xyxy_pixel"),
    ("[192, 128, 64, 32]", SQ, "auto", B, "xyxy_pixel"),  # reversed corners
    ("x1: 64, y1: 32, x2: 192, y2: 128", SQ, "auto", B, "xyxy_pixel"),
    ('{"x": 64, "y": 32, "width": 128, "height": 96}', SQ, "auto", B, "xyxy_pixel"),
    ("64 32 192 128", SQ, "auto", B, "xyxy_pixel"),
    ("**Bounding box:** `[64, 32, 192, 128]`", SQ, "auto", B, "xyxy_pixel"),
    ("Finding 1 of 1: a mass at [64, 32, 192, 128] (confidence 0.9) in the 256x256 image.", SQ, "auto", B,
     "xyxy_pixel"),
    ('{"bbox_2d": [64, 32, 192, 128], "label": "lesion"}', SQ, "auto", B, "xyxy_pixel"),  # Qwen2.5-VL
    ('{"top_left": [64, 32], "bottom_right": [192, 128]}', SQ, "auto", B, "xyxy_pixel"),
    ('{"label": "mass", "confidence": "high", "xmin": 64, "ymin": 32, "xmax": 192, "ymax": 128}', SQ, "auto", B,
     "xyxy_pixel"),
    ("{'x_min': 64, 'y_min': 32, 'x_max': 192, 'y_max': 128, 'label': \"patient's lesion\"}", SQ, "auto", B,
     "xyxy_pixel"),
    ('Sizes [3, 4] aside, the answer is {"bbox": [64, 32, 192, 128]}', SQ, "auto", B, "xyxy_pixel"),
    ("[100, 40, 350, 300]", WIDE, "auto", W, "xyxy_pixel"),
    ("[32, 64, 128, 192]", SQ, "yxyx_pixel", B, "yxyx_pixel"),
    ("[-5, 40, 350, 300]", WIDE, "auto", [0.0, 40.0, 350.0, 300.0], "xyxy_pixel"),  # clipped to the image
    ("[100, 40, 550, 300]", WIDE, "xyxy_pixel", [100.0, 40.0, 500.0, 300.0], "xyxy_pixel"),
    # --- Qwen-VL tags, 0-1000, x first
    ("<ref>tumor</ref><box>(250,125),(750,500)</box>", SQ, "auto", B, "xyxy_1000"),
    ("<|object_ref_start|>lesion<|object_ref_end|><|box_start|>(250,125),(750,500)<|box_end|>", SQ, "auto", B,
     "xyxy_1000"),
    ("<box>250 125 750 500</box>", SQ, "auto", B, "xyxy_1000"),
    ("<box>(200,100),(700,750)</box>", WIDE, "auto", W, "xyxy_1000"),
    # --- 0-1000 without a cue: a value exceeds the image side
    ("[250, 125, 750, 500]", SQ, "auto", B, "xyxy_1000"),
    ("[250, 125, 750, 500]", SQ, "xyxy_1000", B, "xyxy_1000"),
    # --- no box: a miss
    ("I'm sorry, I cannot determine the location of the lesion from this image.", SQ, "auto", None, None),
    ("The lesion is in the upper left quadrant.", SQ, "auto", None, None),
    ("", SQ, "auto", None, None),
    ("There are 2 nodules, the largest 14 mm.", SQ, "auto", None, None),
    ("[0.25, 0.125, 0.75]", SQ, "auto", None, None),
    ("Coordinates: N/A", SQ, "auto", None, None),
    (None, SQ, "auto", None, None),
    ('{"box_2d": []}', SQ, "auto", None, None),
]


def test_table_is_large_and_varied():
    formats = {fmt for *_, fmt in CASES if fmt is not None}
    assert len(CASES) >= 40
    assert len(formats) >= 6
    assert sum(1 for c in CASES if c[3] is None) >= 6


@pytest.mark.parametrize(("text", "size", "box_format", "expected", "expected_format"), CASES)
def test_parse_realistic_outputs(text, size, box_format, expected, expected_format):
    got = parse_box(text, size, box_format)
    if expected is None:
        assert got is None
        return
    assert got is not None, f"no box read from {text!r}"
    assert got.box == pytest.approx(expected, abs=1e-6)
    assert got.box_format == expected_format
    assert got.reason == ("given" if box_format != "auto" else got.reason)
    assert got.reason


def test_auto_reports_its_choice_and_its_blind_spot():
    # a 0-1000 box that fits inside the image cannot be told from pixels: auto says what it assumed
    got = parse_box("[100, 50, 200, 150]", SQ)
    assert got.box_format == "xyxy_pixel"
    assert "fit" in got.reason
    # the explicit format fixes it
    assert parse_box("[100, 50, 200, 150]", SQ, "xyxy_1000").box == pytest.approx([25.6, 12.8, 51.2, 38.4])
    assert "box_2d" in parse_box('{"box_2d": [1, 2, 3, 4]}', SQ).reason


def test_convert_box_every_format_round_trip():
    w, h = WIDE
    x0, y0, x1, y1 = W
    raw = {
        "xyxy_pixel": [x0, y0, x1, y1],
        "yxyx_pixel": [y0, x0, y1, x1],
        "xyxy_norm": [x0 / w, y0 / h, x1 / w, y1 / h],
        "yxyx_norm": [y0 / h, x0 / w, y1 / h, x1 / w],
        "xyxy_1000": [x0 / w * 1000, y0 / h * 1000, x1 / w * 1000, y1 / h * 1000],
        "yxyx_1000": [y0 / h * 1000, x0 / w * 1000, y1 / h * 1000, x1 / w * 1000],
        "xyxy_1024": [x0 / w * 1024, y0 / h * 1024, x1 / w * 1024, y1 / h * 1024],
        "yxyx_1024": [y0 / h * 1024, x0 / w * 1024, y1 / h * 1024, x1 / w * 1024],
    }
    assert set(raw) == set(BOX_FORMATS)
    for fmt, numbers in raw.items():
        assert convert_box(numbers, fmt, WIDE) == pytest.approx(W), fmt


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown box_format"):
        parse_box("[1, 2, 3, 4]", SQ, "xywh")
    with pytest.raises(ValueError, match="width, height"):
        parse_box("[1, 2, 3, 4]", (256,))
    with pytest.raises(ValueError, match="positive"):
        convert_box([1, 2, 3, 4], "xyxy_pixel", (0, 10))
    with pytest.raises(ValueError, match="4 numbers"):
        convert_box([1, 2, 3], "xyxy_pixel", SQ)


def test_box_iou():
    assert box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(1 / 3)
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    assert box_iou(B, B) == 1.0


def test_grounding_scores_counts_unparsable_in_every_denominator():
    preds = [
        '{"box_2d": [125, 250, 500, 750]}',  # exact: IoU 1
        "[64, 32, 128, 128]",  # half the box: IoU 0.5
        "[64, 32, 96, 128]",  # a quarter: IoU 0.25
        "I cannot find it.",  # miss
    ]
    out = grounding_scores(preds, [B] * 4, [SQ] * 4)
    assert out["per_sample_iou"] == pytest.approx([1.0, 0.5, 0.25, 0.0])
    assert out["acc@0.3"] == 0.5
    assert out["acc@0.5"] == 0.5
    assert out["acc@0.75"] == 0.25
    assert out["mean_iou"] == pytest.approx(1.75 / 4)
    assert out["num_unparsable"] == 1 and out["unparsable_rate"] == 0.25 and out["num_samples"] == 4
    assert out["box_formats"] == ["yxyx_1000", "xyxy_pixel", "xyxy_pixel", None]
    assert out["box_format_counts"] == {"yxyx_1000": 1, "xyxy_pixel": 2}
    assert out["parsed_boxes"][3] is None


def test_grounding_scores_options_and_errors():
    out = grounding_scores(["[64, 32, 192, 128]"], [B], [SQ], box_format="xyxy_pixel", iou_thresholds=[0.9])
    assert out["acc@0.9"] == 1.0 and "acc@0.5" not in out
    assert math.isnan(grounding_scores([], [], [])["mean_iou"])
    with pytest.raises(ValueError, match="one of each per sample"):
        grounding_scores(["x"], [B, B], [SQ])
    with pytest.raises(ValueError, match="reference 0"):
        grounding_scores(["x"], [[5, 5, 1, 1]], [SQ])
    with pytest.raises(ValueError, match="outside"):
        grounding_scores(["x"], [B], [SQ], iou_thresholds=[0])
