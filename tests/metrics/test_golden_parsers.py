"""Golden tables for the two answer parsers the VLM tasks rely on.

* >= 150 realistic box outputs, every supported convention (xyxy/yxyx x norm/1000/1024/pixel), the text
  forms models print (JSON, ``box_2d``, Markdown, prose, Qwen-VL tags, PaliGemma ``<locNNNN>`` tokens,
  corner points, Python reprs, named coordinates, reversed corners) and answers with no box. The expected
  pixel box is computed here from the printed numbers with plain arithmetic.
* >= 100 multiple-choice answers: letters in every dress, answer phrases, option text, lower case,
  Markdown, and hedges / negations / several options / refusals, which are unparsable (wrong, counted).
"""

from __future__ import annotations

import pytest

from medfm_hf.metrics.boxes import parse_box
from medfm_hf.metrics.vqa import parse_choice
from medfm_hf.vlm.base import XYXY_NORM, YXYX_1000

W, H = 320, 240  # image (width, height)
TRUE_BOXES = [(40, 30, 120, 90), (200, 100, 310, 230), (12, 150, 64, 238)]


def _printed(box, fmt):
    """The four numbers a model in convention ``fmt`` prints for pixel ``box`` (rounded as models do)."""
    x0, y0, x1, y1 = box
    order, scale = fmt.split("_")
    if scale == "norm":
        vals = [round(x0 / W, 3), round(y0 / H, 3), round(x1 / W, 3), round(y1 / H, 3)]
    elif scale == "1000":
        vals = [round(x0 / W * 1000), round(y0 / H * 1000), round(x1 / W * 1000), round(y1 / H * 1000)]
    elif scale == "1024":
        vals = [min(int(x0 / W * 1024), 1023), min(int(y0 / H * 1024), 1023), min(int(x1 / W * 1024), 1023),
                min(int(y1 / H * 1024), 1023)]
    else:
        vals = [x0, y0, x1, y1]
    if order == "yxyx":
        vals = [vals[1], vals[0], vals[3], vals[2]]
    return vals


def _expected(nums, fmt):
    """Pixel [x0, y0, x1, y1] from printed numbers in ``fmt`` (plain arithmetic, no library code)."""
    order, scale = fmt.split("_")
    a, b, c, d = (float(v) for v in nums)
    xs, ys = ((a, c), (b, d)) if order == "xyxy" else ((b, d), (a, c))
    fx, fy = {"norm": (W, H), "1000": (W / 1000, H / 1000), "1024": (W / 1024, H / 1024),
              "pixel": (1, 1)}[scale]
    x0, x1 = sorted(v * fx for v in xs)
    y0, y1 = sorted(v * fy for v in ys)
    return [min(max(x0, 0), W), min(max(y0, 0), H), min(max(x1, 0), W), min(max(y1, 0), H)]


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


GENERIC = [
    "[{a}, {b}, {c}, {d}]",
    "The lesion is located at [{a}, {b}, {c}, {d}].",
    "Sure! Here is the bounding box of the nodule: [{a}, {b}, {c}, {d}]",
    "**Bounding box:** [{a}, {b}, {c}, {d}]",
    '```json\n{{"bbox": [{a}, {b}, {c}, {d}], "label": "lesion"}}\n```',
    "{{'bbox': [{a}, {b}, {c}, {d}]}}",
    "Answer:\n({a}, {b}, {c}, {d})",
    "The top-left corner is at ({a}, {b}) and the bottom-right corner at ({c}, {d}).",
    "[{c}, {d}, {a}, {b}]",  # corners in reverse order: sorted back
]
SPECIFIC = {
    "yxyx_1000": ['{{"box_2d": [{a}, {b}, {c}, {d}]}}',
                  '```json\n[\n  {{"box_2d": [{a}, {b}, {c}, {d}], "label": "tumor"}}\n]\n```',
                  "box_2d: [{a}, {b}, {c}, {d}]"],
    "xyxy_1000": ["<box>({a},{b}),({c},{d})</box>",
                  "<|object_ref_start|>the lesion<|object_ref_end|><|box_start|>({a},{b}),({c},{d})<|box_end|>",
                  "<|box_start|>{a} {b} {c} {d}<|box_end|>"],
    "xyxy_pixel": ['```json\n[{{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "polyp"}}]\n```'],
    "yxyx_1024": ["<loc{a:04d}><loc{b:04d}><loc{c:04d}><loc{d:04d}> lesion",
                  "<loc{a:04d}><loc{b:04d}><loc{c:04d}><loc{d:04d}>"],
}
CONVENTIONS = ["xyxy_norm", "yxyx_norm", "xyxy_1000", "yxyx_1000", "xyxy_pixel", "yxyx_pixel"]


def _box_cases():
    cases = []
    for fmt in CONVENTIONS + ["yxyx_1024"]:
        templates = (GENERIC if fmt != "yxyx_1024" else []) + SPECIFIC.get(fmt, [])
        for box in TRUE_BOXES:
            nums = _printed(box, fmt)
            for t in templates:
                if "{a:04d}" in t:
                    text = t.format(a=nums[0], b=nums[1], c=nums[2], d=nums[3])
                else:
                    text = t.format(**dict(zip("abcd", map(_fmt, nums))))
                cases.append((text, fmt, _expected(nums, fmt)))
    # named coordinates keep their order whatever the convention asked for (its scale applies)
    for box in TRUE_BOXES:
        n = _printed(box, "xyxy_1000")
        for fmt in ("xyxy_1000", "yxyx_1000"):
            cases.append((f"x_min = {n[0]}, y_min = {n[1]}, x_max = {n[2]}, y_max = {n[3]}", fmt,
                          _expected(n, "xyxy_1000")))
            cases.append((f'{{"ymin": {n[1]}, "xmin": {n[0]}, "ymax": {n[3]}, "xmax": {n[2]}}}', fmt,
                          _expected(n, "xyxy_1000")))
    return cases


NO_BOX = [
    "I'm sorry, I can't identify a lesion in this image.",
    "There is no abnormality visible.",
    "The lesion is in the upper left quadrant of the image.",
    "[0.2, 0.3, 0.5]",
    "",
    "Bounding box: not applicable",
    "The nodule measures 12 mm.",
    "Coordinates: (120, 80)",
    "<box></box>",
    '{"box_2d": []}',
    "The image shows 2 lesions.",
    "I cannot provide coordinates for medical images.",
    "<loc0012><loc0200> lesion",
    "x_min = 10, y_min = 20",
    "Unable to localize.",
]
BOX_CASES = _box_cases()


def test_golden_box_table_is_large_and_covers_every_convention():
    assert len(BOX_CASES) + len(NO_BOX) >= 150
    fmts = {f for _, f, _ in BOX_CASES}
    assert fmts >= {"xyxy_norm", "yxyx_norm", "xyxy_1000", "yxyx_1000", "xyxy_pixel", "yxyx_pixel", "yxyx_1024"}


@pytest.mark.parametrize("text,fmt,expected", BOX_CASES)
def test_golden_boxes(text, fmt, expected):
    got = parse_box(text, (W, H), fmt)
    assert got is not None, text
    assert got.box == pytest.approx(expected, abs=1e-6), text


@pytest.mark.parametrize("text", NO_BOX)
@pytest.mark.parametrize("fmt", ["xyxy_norm", "yxyx_1000"])
def test_golden_no_box(text, fmt):
    assert parse_box(text, (W, H), fmt) is None


@pytest.mark.parametrize("text,fmt", [(t, f) for t, f, _ in BOX_CASES
                                      if "box_2d" in t or "<loc" in t or "<|box_start|>" in t or "<box>" in t])
def test_cues_read_alone_in_auto_mode(text, fmt):
    """Where the text names its convention (box_2d, Qwen tags, PaliGemma tokens), ``auto`` reads it."""
    got = parse_box(text, (W, H), "auto")
    assert got is not None and got.box_format == fmt, text


def test_family_conventions_parse_their_own_instruction_format():
    assert YXYX_1000.parse('{"box_2d": [125, 125, 375, 375]}', (W, H)).box == pytest.approx([40, 30, 120, 90])
    assert XYXY_NORM.parse("[0.125, 0.125, 0.375, 0.375]", (W, H)).box == pytest.approx([40, 30, 120, 90])


# ------------------------------------------------------------------------------------------------------
# multiple choice
# ------------------------------------------------------------------------------------------------------

MOD = ["CT", "MRI", "X-ray", "Ultrasound"]
LOC = ["upper left", "upper right", "lower left", "lower right"]
SIZE = ["small", "medium", "large", "very large"]
DX = ["Pneumonia", "Pneumothorax", "Pleural effusion", "Cardiomegaly"]
SETS = [MOD, LOC, SIZE, DX]

LETTER_TEMPLATES = [
    "{L}", "{l}", "({L})", "{L}.", "**{L}**", "`{L}`", "{L}. {T}", "{L}) {T}", "The answer is {L}.",
    "The answer is ({L}) {T}.", "Answer: {L}", "answer: {l}", "**Answer:** {L}. {T}", "The correct option is {L}: {T}.",
    "Based on the image, I would choose option {L}.", "### Answer\n**{L}) {T}**", "Option {L}", "My answer: ({l})",
    "{T}", "{t}", "**{T}**", "The image shows {t}.",
]


def _mc_cases():
    cases = []
    for k, opts in enumerate(SETS):
        for j, tmpl in enumerate(LETTER_TEMPLATES):
            i = (j + k) % 4
            L, T = "ABCD"[i], opts[i]
            text = tmpl.format(L=L, l=L.lower(), T=T, t=T.lower())
            cases.append((text, opts, L))
    return cases


UNPARSABLE = [
    # hedges: more than one option
    ("A or B", MOD), ("Either A or C.", MOD), ("A/B", DX), ("A, B or C", SIZE), ("It could be B or D.", DX),
    ("(A)(B)", LOC), ("A and C are both possible.", DX), ("I'm torn between CT and MRI.", MOD),
    ("Maybe B, maybe C.", SIZE), ("pneumonia or pneumothorax", DX), ("A B C D", MOD),
    # negations of an option
    ("It is not D.", DX), ("Not pneumonia.", DX), ("Definitely not B.", MOD), ("B, not A", LOC),
    ("neither A nor B", SIZE), ("It's not CT.", MOD), ("This is not an MRI scan.", MOD), ("The answer is not C.", DX),
    ("Rule out pneumothorax.", DX),
    # no answer
    ("", MOD), ("I don't know.", DX), ("E", MOD), ("The image quality is too poor to tell.", LOC),
    ("None of the above.", SIZE), ("I cannot answer medical questions.", DX),
]
MC_CASES = _mc_cases()


def test_golden_mc_table_is_large():
    assert len(MC_CASES) + len(UNPARSABLE) >= 100


@pytest.mark.parametrize("text,options,expected", MC_CASES)
def test_golden_choices(text, options, expected):
    letter, rule = parse_choice(text, options)
    assert letter == expected, (text, rule)


@pytest.mark.parametrize("text,options", UNPARSABLE)
def test_golden_unparsable_choices(text, options):
    letter, rule = parse_choice(text, options)
    assert letter is None, (text, letter, rule)
