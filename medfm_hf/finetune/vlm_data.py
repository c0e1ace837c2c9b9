"""Grounding training data for vision-language models: prompts, box targets and loss-masked batches.

* **Rows**: ``clean/train`` to fit and ``clean/validation`` to select, read through
  :func:`medfm_hf.finetune.data.split_files` (which refuses ``test``).
* **Prompt**: :func:`grounding_prompt` is the grounding evaluator's own prompt
  (:data:`medfm_hf.tasks.grounding.GROUNDING`: the grounding phrase or question, then the family's box
  instruction), rendered by the family's prompt format -- the very text ``evaluate.py --task grounding``
  sends; rows are chosen by the same rule (:func:`is_grounding_row`).
* **Target**: :func:`format_box` writes the pixel box in the family's declared
  :class:`~medfm_hf.vlm.base.BoxConvention` (MedGemma ``{"box_2d": [y0, x0, y1, x1]}`` on 0-1000; LLaVA-Med
  ``[x0, y0, x1, y1]`` fractions of the image padded to a centred square), so that
  ``convention.parse(format_box(box))`` gives the box back (up to the format's rounding).
* **Batches** (:func:`encode_training_batch`): prompt tokens are produced by the same processor call as at
  inference (image tokens expanded, ``token_type_ids`` for Gemma 3), the answer and the family's end-of-turn
  marker are appended, rows are **right padded**; labels are ``-100`` on the prompt, the image tokens and the
  padding, so the loss covers only the answer tokens. Inference pads on the left (the generation engine).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medfm_hf.finetune.data import FinetuneDataError, PerturbationAugment, Sample, sample_seed, split_files
from medfm_hf.records import decode_png, mask_to_bbox

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

__all__ = [
    "IGNORE_INDEX",
    "GroundingExample",
    "GroundingSplit",
    "encode_training_batch",
    "format_box",
    "grounding_prompt",
    "is_grounding_row",
    "read_grounding_split",
]


def grounding_prompt(row: dict, vlm: Any) -> str:
    """The user prompt of a row, exactly as the grounding evaluator builds it: the task spec
    (:data:`medfm_hf.tasks.grounding.GROUNDING`: ``Locate <grounding phrase> in this image.`` or the row's
    question, then the family's box instruction) in the family's template."""
    from medfm_hf.tasks.grounding import GROUNDING

    return GROUNDING.prompt(row, vlm)


def is_grounding_row(row: dict) -> bool:
    """Whether the grounding evaluator would ask about this row (target box plus phrase or question)."""
    from medfm_hf.tasks.grounding import GROUNDING

    return GROUNDING.wants(row)


def read_grounding_split(dataset: str, split: str) -> list[dict]:
    """Rows of ``clean/<split>`` (``train`` or ``validation`` only) that have a ``target_bbox``, sorted by id."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    cols = ["image_id", "modality", "task", "image", "mask", "bbox", "question", "target_bbox", "meta", "split"]
    for f in split_files(dataset, split):
        rows += pq.read_table(f, columns=cols).to_pylist()
    bad = [r["image_id"] for r in rows if r.get("split") not in (None, split)]
    if bad:
        raise FinetuneDataError(f"clean/{split} holds rows whose split field is not {split!r} (e.g. {bad[:3]})")
    keep = [r for r in rows if is_grounding_row(r)]
    if not keep:
        raise FinetuneDataError(f"clean/{split} of {dataset} has no row with a target_bbox (grounding); build a "
                                "benchmark from a grounding source (mecovqa) or the demo set")
    keep.sort(key=lambda r: r["image_id"])
    return keep


# ---------------------------------------------------------------------------------------------------------
# box targets in the family's convention
# ---------------------------------------------------------------------------------------------------------


def format_box(box: list[float], convention: Any, image_size: tuple[int, int]) -> str:
    """Write pixel box ``[x0, y0, x1, y1]`` of an image of ``image_size = (width, height)`` as the answer text
    of ``convention`` (a :class:`~medfm_hf.vlm.base.BoxConvention`).

    ``yxyx_1000`` -> ``{"box_2d": [y0, x0, y1, x1]}`` with integers (Gemini / MedGemma); ``*_norm`` ->
    ``[a, b, c, d]`` with 3 decimals; ``*_1000`` -> integers; ``*_pixel`` -> integers. With
    ``frame="padded_square"`` the box is first moved into the centred square the model sees.
    """
    width, height = int(image_size[0]), int(image_size[1])
    x0, y0, x1, y1 = (float(v) for v in box)
    if getattr(convention, "frame", "image") == "padded_square":
        side = max(width, height)
        dx, dy = (side - width) // 2, (side - height) // 2
        x0, x1, y0, y1 = x0 + dx, x1 + dx, y0 + dy, y1 + dy
        width = height = side
    order, scale = convention.box_format.split("_")
    if scale == "norm":
        vals = [x0 / width, y0 / height, x1 / width, y1 / height]
        nums = [f"{min(max(v, 0.0), 1.0):.3f}" for v in vals]
    elif scale == "1000":
        vals = [x0 / width * 1000, y0 / height * 1000, x1 / width * 1000, y1 / height * 1000]
        nums = [str(int(round(min(max(v, 0.0), 1000.0)))) for v in vals]
    else:
        nums = [str(int(round(v))) for v in (x0, y0, x1, y1)]
    if order == "yxyx":
        nums = [nums[1], nums[0], nums[3], nums[2]]
    listed = "[" + ", ".join(nums) + "]"
    if convention.box_format == "yxyx_1000":
        return '{"box_2d": ' + listed + "}"
    return listed


# ---------------------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------------------


@dataclass
class GroundingExample:
    """One grounding sample ready for the model: RGB uint8 image, user prompt, pixel target box, answer text."""

    index: int
    image_id: str
    image: np.ndarray
    prompt: str
    box: list[float]
    answer: str


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """The image a VLM is shown, as the evaluator converts it (uint16 / 257, grey repeated to RGB)."""
    from medfm_hf.tasks.base import to_rgb_uint8

    image = to_rgb_uint8(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image)


class GroundingSplit:
    """One split as :class:`GroundingExample` items; ``split[(epoch, index)]`` is a pure function of
    ``(seed, epoch, index)`` (the perturbation draw of ``--perturbation_augment`` included)."""

    def __init__(self, rows: list[dict], vlm: Any, *, seed: int, train: bool,
                 perturb: PerturbationAugment | None = None) -> None:
        self.rows = rows
        self.vlm = vlm
        self.seed = int(seed)
        self.perturb = perturb if train else None
        self.image_ids = [r["image_id"] for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def _sample(self, index: int) -> tuple[Sample, bool]:
        """The row as a segmentation :class:`Sample` whose mask carries the target box through geometry:
        the lesion mask when the target is its box (moved boxes stay tight, as in the benchmark), else the
        target box drawn as a filled rectangle (moved like the benchmark's ``_move_box``)."""
        r = self.rows[index]
        image = decode_png(r["image"]["bytes"])
        target = [float(v) for v in r["target_bbox"]]
        h, w = image.shape[:2]
        mask = None
        if r.get("mask") is not None and r.get("bbox") and [float(v) for v in r["bbox"]] == target:
            mask = decode_png(r["mask"]["bytes"]) > 0
        own = mask is not None
        if mask is None:
            mask = np.zeros((h, w), bool)
            x0, y0, x1, y1 = target
            mask[int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = True
        return Sample(r["image_id"], r["modality"], image, mask, mask_to_bbox(mask) or [0, 0, 0, 0]), own

    def __getitem__(self, item: tuple[int, int]) -> GroundingExample:
        epoch, index = item
        r = self.rows[index]
        target = [float(v) for v in r["target_bbox"]]
        if self.perturb is None:
            image = decode_png(r["image"]["bytes"])
        else:
            s, _ = self._sample(index)
            rng = np.random.default_rng(sample_seed(self.seed, epoch, index))
            moved = self.perturb(s, rng)
            image = moved.image
            if moved is not s:  # a perturbation was applied; geometric ones moved the mask and so the box
                target = [float(v) for v in moved.bbox]
        image = to_rgb8(image)
        h, w = image.shape[:2]
        prompt = grounding_prompt(r, self.vlm)
        answer = format_box(target, self.vlm.box_convention, (w, h))
        return GroundingExample(index, r["image_id"], image, prompt, target, answer)


# ---------------------------------------------------------------------------------------------------------
# tokenisation with the answer-only loss mask
# ---------------------------------------------------------------------------------------------------------


def answer_suffix(vlm: Any) -> str:
    """What follows the answer in the family's conversation: the chat template's end of the assistant turn
    (Gemma 3: ``<end_of_turn>``), or the tokenizer's EOS for plain templates (LLaVA-Med: ``</s>``)."""
    tok = vlm.tokenizer
    if vlm.prompt_format.kind == "chat_template":
        probe = "PROBE_ANSWER"
        msgs = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
        head = vlm.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        full = vlm.processor.apply_chat_template(
            [*msgs, {"role": "assistant", "content": [{"type": "text", "text": probe}]}], tokenize=False)
        if full.startswith(head) and probe in full:
            tail = full[len(head):].split(probe, 1)[1]
            # keep the turn terminator itself (the first special token of the tail), not trailing newlines
            for t in sorted(tok.all_special_tokens, key=len, reverse=True):
                if tail.lstrip().startswith(t):
                    return t
            if tail.strip():
                return tail.rstrip("\n")
    return tok.eos_token


def answer_prefix(vlm: Any) -> str:
    """Text between the rendered prompt and the answer: a space after LLaVA's ``[/INST]``, nothing after a
    chat template's generation prompt (it ends with a newline)."""
    return " " if vlm.prompt_format.kind == "template" else ""


def encode_training_batch(vlm: Any, examples: list[GroundingExample], *, config: Any = None) -> dict[str, torch.Tensor]:
    """Model inputs and labels for a batch of examples, right padded.

    Each row is ``processor(prompt, image)`` -- exactly what :meth:`TransformersVLM.encode` builds for the
    same query at inference -- followed by the tokens of ``answer_prefix + answer + answer_suffix``.
    ``labels`` copies the answer tokens and is ``IGNORE_INDEX`` elsewhere (prompt, image tokens, padding).
    ``answer_tokens`` is the number of labelled tokens per row.
    """
    from medfm_hf.vlm.base import GenerationConfig, Query

    config = config or GenerationConfig()
    tok = vlm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    suffix = answer_suffix(vlm)
    prefix = answer_prefix(vlm)
    rows: list[dict[str, torch.Tensor]] = []
    pixel_values = []
    for ex in examples:
        q = vlm.make_query(ex.image, ex.prompt)
        text = vlm.render(q, config)
        bos = tok.bos_token
        add_special = not (bos and text.startswith(bos))
        enc = vlm.processor(images=[[vlm.prepare_image(Query(q.image, q.prompt, q.image_hash))]], text=[text],
                            return_tensors="pt", add_special_tokens=add_special)
        ans = tok(prefix + ex.answer + suffix, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        prompt_ids = enc["input_ids"][0]
        row = {"input_ids": torch.cat([prompt_ids, ans]),
               "attention_mask": torch.ones(len(prompt_ids) + len(ans), dtype=torch.long),
               "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), ans])}
        if "token_type_ids" in enc:
            row["token_type_ids"] = torch.cat([enc["token_type_ids"][0], torch.zeros_like(ans)])
        rows.append(row)
        pixel_values.append(enc["pixel_values"])
    length = max(len(r["input_ids"]) for r in rows)
    out: dict[str, torch.Tensor] = {}
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX, "token_type_ids": 0}
    for key in rows[0]:
        out[key] = torch.stack([torch.cat([r[key], torch.full((length - len(r[key]),), fill[key],
                                                               dtype=r[key].dtype)]) for r in rows])  # right pad
    out["pixel_values"] = torch.cat(pixel_values)
    out["labels"] = mask_special_labels(out["labels"], vlm)
    out["answer_tokens"] = (out["labels"] != IGNORE_INDEX).sum(1)
    return out


def image_token_ids(vlm: Any) -> set[int]:
    """Ids of the image placeholder / soft tokens and image delimiters of the model (never labelled)."""
    cfg = vlm.model.config
    ids: set[int] = set()
    for name in ("image_token_id", "image_token_index", "boi_token_index", "eoi_token_index", "boi_token_id",
                 "eoi_token_id"):
        v = getattr(cfg, name, None)
        if isinstance(v, int):
            ids.add(v)
    return ids


def mask_special_labels(labels: torch.Tensor, vlm: Any) -> torch.Tensor:
    """``labels`` with every image token (MedGemma's soft image token 262144, LLaVA's ``<image>``, image
    delimiters) set to ``IGNORE_INDEX`` -- a guard on top of the prompt mask (padding is masked when padded)."""
    labels = labels.clone()
    for i in image_token_ids(vlm):
        labels[labels == i] = IGNORE_INDEX
    return labels
