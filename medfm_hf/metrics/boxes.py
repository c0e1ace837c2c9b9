"""Parse the bounding boxes that vision-language models print, and score them against pixel boxes.

Models answer a grounding prompt in many conventions. This module turns any of them into a pixel box
``[x0, y0, x1, y1]`` of the image the model saw (``x`` = column, ``y`` = row, ``x1``/``y1`` exclusive,
matching :func:`medfm_hf.records.mask_to_bbox`).

A convention is an *order* and a *scale*, written ``"{order}_{scale}"``:

===============  ==========================================================================
order            ``xyxy`` -- ``[x0, y0, x1, y1]``; ``yxyx`` -- ``[y0, x0, y1, x1]`` (Gemini, MedGemma)
scale            ``norm`` -- fractions of the side in ``[0, 1]``; ``1000`` -- integers in ``[0, 1000]``
                 (Gemini/MedGemma ``box_2d``, Qwen-VL ``<box>``); ``1024`` -- PaliGemma location
                 tokens ``<loc0000>``-``<loc1023>`` (bins of 1/1024 of the side); ``pixel`` -- pixels
===============  ==========================================================================

Text forms read: JSON (``{"box_2d": [...]}``, ``{"bbox": [...]}``, ``{"x_min": .., "y_min": .., ...}``,
lists of such objects -- the first is used), ``<box>...</box>`` / ``<|box_start|>...<|box_end|>`` tags,
four PaliGemma ``<locNNNN>`` tokens (``y0 x0 y1 x1``, 1024 bins),
bracketed or bare lists of four numbers, two corner points ``(x0, y0), (x1, y1)``, and named
coordinates in prose (``x_min = 12, y_min = 30, ...``). Corners given in reverse (or mixed) order are
sorted. A text with no readable box gives ``None``: the caller counts it as a miss.

``box_format="auto"`` chooses a convention and says why (:attr:`ParsedBox.reason`):

1. a cue in the text wins: ``box_2d`` means ``yxyx_1000`` (Gemini's documented format), named keys give
   the order, a ``<box>``/``<|box_start|>`` tag means ``1000`` scale (Qwen-VL), four ``<locNNNN>`` tokens
   mean ``yxyx_1024`` (PaliGemma);
2. otherwise the order is ``xyxy``, and the scale is ``norm`` if every value is in ``[0, 1]`` (and at
   least one is fractional or the box is ``[0, 0, 1, 1]``), ``1000`` if a value exceeds the image side
   it belongs to but none exceeds 1000, else ``pixel``.

With a given convention the numbers are read in it, except that named coordinates (``x_min = ..``,
``{"ymin": ..}``) keep their own order (the given scale still applies).

Rule 2 cannot see a y-first box without a cue, nor a ``1000``-scale box that happens to fit inside the
image: when the model's convention is known (it is set by the prompt), pass it explicitly.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_FORMATS",
    "ParsedBox",
    "box_iou",
    "convert_box",
    "parse_box",
]

BOX_FORMATS: tuple[str, ...] = (
    "xyxy_norm",
    "xyxy_1000",
    "xyxy_pixel",
    "yxyx_norm",
    "yxyx_1000",
    "yxyx_pixel",
    "xyxy_1024",
    "yxyx_1024",
)

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(_NUM)
_SEP = r"\s*(?:,|;|\s)\s*"
# four numbers separated only by commas/semicolons/spaces, optionally inside brackets
_FOUR_RE = re.compile(rf"(?<![\w.])({_NUM}){_SEP}({_NUM}){_SEP}({_NUM}){_SEP}({_NUM})(?!\w|\.\d)")
# two corner points: (x0, y0), (x1, y1)  or  (x0,y0) to (x1,y1)
_POINTS_RE = re.compile(
    rf"[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]][^\d\(\[\]\)]{{0,40}}?[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]]"
)
_TAG_RE = re.compile(
    r"<\|?box(?:_start)?\|?>(.*?)<\|?(?:/box|box_end)\|?>", flags=re.IGNORECASE | re.DOTALL
)
# PaliGemma detection output: four location tokens, y0 x0 y1 x1, each a bin of 1/1024 of the side
_LOC_RE = re.compile(r"<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>")
_JSON_CANDIDATE_RE = re.compile(r"[\[{]")
_BOX_2D_TEXT_RE = re.compile(r"\bbox_2d\b", flags=re.IGNORECASE)

_BOX_KEYS = ("box_2d", "bbox_2d", "bbox", "box", "bounding_box", "boundingbox", "coordinates", "coords")
_XY_KEYS = {
    "x0": ("xmin", "x0", "left", "minx"),
    "y0": ("ymin", "y0", "top", "miny"),
    "x1": ("xmax", "x1", "right", "maxx"),
    "y1": ("ymax", "y1", "bottom", "maxy"),
}
# "x1, y1, x2, y2" naming: x1 is the first corner
_X12_KEYS = {"x0": ("x1",), "y0": ("y1",), "x1": ("x2",), "y1": ("y2",)}


@dataclass(frozen=True)
class ParsedBox:
    """A box read from model text.

    Attributes
    ----------
    box : list of float
        Pixel ``[x0, y0, x1, y1]``, corners sorted, clipped to the image.
    raw : list of float
        The four numbers as printed, in printed order.
    box_format : str
        The convention used (one of :data:`BOX_FORMATS`).
    reason : str
        Why that convention: ``"given"`` when passed explicitly, else the ``auto`` rule that chose it.
    source : str
        Which text form held the numbers (``json``, ``json-named``, ``tag``, ``loc``, ``points``, ``named``,
        ``list``).
    """

    box: list[float]
    raw: list[float]
    box_format: str
    reason: str
    source: str


def convert_box(raw: Sequence[float], box_format: str, image_size: tuple[int, int]) -> list[float]:
    """Convert four numbers in ``box_format`` to a pixel ``[x0, y0, x1, y1]`` box.

    Parameters
    ----------
    raw : sequence of 4 float
        The numbers in printed order.
    box_format : str
        One of :data:`BOX_FORMATS`.
    image_size : (width, height)
        Size of the image the box refers to, in pixels.

    Returns
    -------
    list of float
        Corners sorted (``x0 <= x1``, ``y0 <= y1``) and clipped to ``[0, width] x [0, height]``.

    Examples
    --------
    >>> convert_box([100, 200, 500, 600], "yxyx_1000", (256, 128))
    [51.2, 12.8, 153.6, 64.0]
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)} or 'auto'")
    if len(raw) != 4:
        raise ValueError(f"a box needs 4 numbers, got {len(raw)}: {list(raw)}")
    width, height = _check_size(image_size)
    order, scale = box_format.split("_")
    a, b, c, d = (float(v) for v in raw)
    x0, y0, x1, y1 = (a, b, c, d) if order == "xyxy" else (b, a, d, c)
    if scale == "norm":
        sx, sy = float(width), float(height)
    elif scale == "1000":
        sx, sy = width / 1000.0, height / 1000.0
    elif scale == "1024":
        sx, sy = width / 1024.0, height / 1024.0
    else:
        sx = sy = 1.0
    x0, x1 = sorted((x0 * sx, x1 * sx))
    y0, y1 = sorted((y0 * sy, y1 * sy))
    return [
        min(max(x0, 0.0), float(width)),
        min(max(y0, 0.0), float(height)),
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
    ]


def _check_size(image_size: Sequence[int]) -> tuple[int, int]:
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {image_size!r}")
    width, height = int(image_size[0]), int(image_size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive (width, height), got {image_size!r}")
    return width, height


def _as_four(value: Any) -> list[float] | None:
    """Four finite numbers from a JSON value (a flat list, or a list of two points)."""
    if isinstance(value, dict):
        return _named_from_mapping(value)
    if not isinstance(value, (list, tuple)):
        if isinstance(value, str):
            nums = _NUM_RE.findall(value)
            return [float(n) for n in nums] if len(nums) == 4 else None
        return None
    flat: list[Any] = []
    for v in value:
        if isinstance(v, (list, tuple)):
            flat.extend(v)
        else:
            flat.append(v)
    if len(flat) != 4:
        return None
    try:
        nums = [float(v) for v in flat]
    except (TypeError, ValueError):
        return None
    return nums if all(math.isfinite(v) for v in nums) else None


def _norm_key(key: str) -> str:
    return re.sub(r"[\s\-]", "_", key.strip().lower())


def _named_from_mapping(obj: dict[str, Any]) -> list[float] | None:
    keys = {_norm_key(k).replace("_", ""): v for k, v in obj.items() if isinstance(k, str)}
    corners = [keys.get(k) for k in ("topleft", "bottomright")]
    if all(isinstance(c, (list, tuple)) and len(c) == 2 for c in corners):
        return _as_four(corners)
    numbers: dict[str, float] = {}
    for k, v in keys.items():
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            try:
                numbers[k] = float(v)
            except ValueError:
                continue  # a label or other text field
    return _named_coordinates(numbers)


def _named_coordinates(values: dict[str, float]) -> list[float] | None:
    """``[x0, y0, x1, y1]`` from named coordinates (keys lower case, ``_`` removed or not), else ``None``."""
    vals = {k.replace("_", ""): v for k, v in values.items()}
    table = _X12_KEYS if ("x2" in vals or "y2" in vals) else _XY_KEYS
    out = []
    for slot in ("x0", "y0", "x1", "y1"):
        value = next((vals[n] for n in table[slot] if n in vals), None)
        if value is None:
            break
        out.append(value)
    else:
        return out
    if all(k in vals for k in ("x", "y", "width", "height")):
        return [vals["x"], vals["y"], vals["x"] + vals["width"], vals["y"] + vals["height"]]
    return None


def _json_values(text: str) -> list[Any]:
    """Every JSON object/array that parses, scanning from each opening bracket (Python reprs too)."""
    cleaned = text.replace("```json", " ").replace("```", " ")
    out = _scan_json(cleaned)
    if "'" in cleaned:  # a Python repr such as {'bbox': [...]}
        out += _scan_json(cleaned.replace("'", '"'))
    return out


def _scan_json(cleaned: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out = []
    pos = 0
    while True:
        m = _JSON_CANDIDATE_RE.search(cleaned, pos)
        if m is None:
            break
        try:
            value, end = decoder.raw_decode(cleaned, m.start())
        except ValueError:
            pos = m.start() + 1
            continue
        out.append(value)
        pos = end
    return out


def _from_json(text: str) -> tuple[list[float], str, str | None] | None:
    """(numbers, source, cue) from the first JSON object that holds a box, else the first 4-number list."""
    values = _json_values(text)
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                continue
            keys = {_norm_key(k): v for k, v in item.items() if isinstance(k, str)}
            for key in _BOX_KEYS:
                if key in keys:
                    nums = _as_four(keys[key])
                    if nums is not None:
                        return nums, "json", "yxyx_1000" if key == "box_2d" else None
            named = _named_from_mapping(item)
            if named is not None:
                return named, "json-named", "xyxy"
    for value in values:
        if isinstance(value, list):
            nums = _as_four(value)
            if nums is not None:
                return nums, "json", None
    return None


_NAMED_TEXT_RE = re.compile(
    rf"\b(x_?min|y_?min|x_?max|y_?max|x0|y0|x1|y1|x2|y2|left|top|right|bottom|x|y|width|height)[\"']?\s*[:=]\s*({_NUM})",
    flags=re.IGNORECASE,
)


def _from_named_text(text: str) -> list[float] | None:
    pairs: dict[str, float] = {}
    for key, value in _NAMED_TEXT_RE.findall(text):
        pairs.setdefault(_norm_key(key).replace("_", ""), float(value))
    return _named_coordinates(pairs) if len(pairs) >= 4 else None


def _find_numbers(text: str) -> tuple[list[float], str, str | None] | None:
    """(numbers in printed order, source, cue) or ``None``."""
    got = _from_json(text)
    if got is None:
        got = _from_text(text)
    if got is not None and got[2] is None and _BOX_2D_TEXT_RE.search(text):
        return got[0], got[1], "yxyx_1000"  # "box_2d: [...]" written as prose, not JSON
    return got


def _from_text(text: str) -> tuple[list[float], str, str | None] | None:
    m = _LOC_RE.search(text)
    if m is not None:
        return [float(v) for v in m.groups()], "loc", "yxyx_1024"
    for m in _TAG_RE.finditer(text):
        inner = m.group(1)
        nums = _NUM_RE.findall(inner)
        if len(nums) == 4:
            return [float(n) for n in nums], "tag", "1000"
    named = _from_named_text(text)
    if named is not None:
        return named, "named", "xyxy"
    m = _POINTS_RE.search(text)
    if m is not None:
        return [float(v) for v in m.groups()], "points", None
    m = _FOUR_RE.search(text)
    if m is not None:
        return [float(v) for v in m.groups()], "list", None
    return None


def _auto_format(raw: Sequence[float], cue: str | None, image_size: tuple[int, int]) -> tuple[str, str]:
    if cue == "yxyx_1024":
        return cue, "<locNNNN> tokens: PaliGemma y0 x0 y1 x1 in 1024 bins"
    if cue in BOX_FORMATS:
        return cue, "box_2d: Gemini/MedGemma [y0, x0, y1, x1] in 0-1000"
    order = "xyxy"
    order_reason = "no order cue, x first"
    if cue == "xyxy":
        order_reason = "named coordinates"
    if cue == "1000":
        return f"{order}_1000", "<box> tag: Qwen-VL style 0-1000, x first"
    width, height = image_size
    values = [abs(v) for v in raw]
    if max(values) <= 1.0 and (any(v != int(v) for v in values) or max(values) == 1.0):
        return f"{order}_norm", f"all values in [0, 1]; {order_reason}"
    xs, ys = (raw[0], raw[2]), (raw[1], raw[3])
    exceeds = max(xs) > width or max(ys) > height
    if exceeds and max(values) <= 1000:
        return f"{order}_1000", f"a value exceeds the {width}x{height} image but none exceeds 1000; {order_reason}"
    return f"{order}_pixel", f"values fit the {width}x{height} image; {order_reason}"


def parse_box(text: Any, image_size: tuple[int, int], box_format: str = "auto") -> ParsedBox | None:
    """Read one box from a model's answer.

    Parameters
    ----------
    text : str or sequence of 4 numbers
        The model's raw output (or four numbers already extracted).
    image_size : (width, height)
        Size of the image the model was shown, in pixels.
    box_format : str
        One of :data:`BOX_FORMATS`, or ``"auto"`` (see the module docstring).

    Returns
    -------
    ParsedBox or None
        ``None`` when the text holds no readable box.

    Examples
    --------
    >>> parse_box('{"box_2d": [100, 250, 400, 750]}', (200, 100)).box
    [50.0, 10.0, 150.0, 40.0]
    >>> parse_box("The lesion is at [0.25, 0.5, 0.75, 1.0].", (200, 100)).box_format
    'xyxy_norm'
    >>> parse_box("I cannot find a lesion.", (200, 100)) is None
    True
    """
    if box_format != "auto" and box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)} or 'auto'")
    size = _check_size(image_size)
    if text is None:
        return None
    if isinstance(text, str):
        found = _find_numbers(text)
    else:
        nums = _as_four(list(text))
        found = None if nums is None else (nums, "list", None)
    if found is None:
        logger.debug("no box in %r", str(text)[:120])
        return None
    raw, source, cue = found
    if not all(math.isfinite(v) for v in raw):
        return None
    if box_format == "auto":
        fmt, reason = _auto_format(raw, cue, size)
    elif cue == "xyxy" and not box_format.startswith("xyxy"):
        # named coordinates (x_min = .., y_min = ..) state their order: keep the given scale only
        fmt, reason = "xyxy_" + box_format.split("_")[1], "given scale; order from named coordinates"
    else:
        fmt, reason = box_format, "given"
    box = convert_box(raw, fmt, size)
    return ParsedBox(box=box, raw=list(raw), box_format=fmt, reason=reason, source=source)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x0, y0, x1, y1]`` boxes (0 when the union is empty).

    Examples
    --------
    >>> box_iou([0, 0, 2, 2], [1, 0, 3, 2])
    0.3333333333333333
    """
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0
