"""OmniMedVQA multiple-choice VQA (open-access part): ``--sources omnimedvqa=PATH``.

Expected layout (the release unpacked; ``PATH`` is the folder holding ``QA_information/`` and
``Images/``, or its parent)::

    PATH/QA_information/Open-access/<Dataset>.json     (a list of QA items per source dataset)
    PATH/Images/<Dataset>/...                           (the images the items point at)

Each item has ``question_id``, ``question``, ``option_A`` .. ``option_D`` (fewer for some items),
``gt_answer`` (the text of the right option), ``image_path`` (relative to ``PATH``; a leading
``${dataset_root_path}/`` is removed), ``modality_type``, ``question_type`` and ``dataset``. It becomes
a ``vqa`` record with ``options`` in letter order and ``answer`` = the letter whose option equals
``gt_answer`` (exact, then case- and space-insensitive; no match -> skipped).

Modalities are mapped with :data:`MODALITY_MAP` (see ``docs/sources.md``); names are compared after
lower-casing and removing everything but letters and digits, so ``"MR (Mag-netic Resonance
Imaging)"`` matches ``mrmagneticresonanceimaging``. An **unmapped modality name is an error** listing
every unmapped name, unless you map it (``modality_map="Infrared Reflectance Imaging=fundus"``,
several separated by ``;``) or skip those items (``unmapped=skip``, recorded in the report).

OmniMedVQA has no official split (it is an evaluation benchmark): a seeded draw per **image** (all
questions on one image share a split) is recorded in ``split_file`` and reused.

Licence: the QA annotations are released for research use (Hu et al., "OmniMedVQA", CVPR 2024); every
image keeps the licence of its source dataset (``meta["dataset"]``). Get it from
https://huggingface.co/datasets/foreverbeliever/OmniMedVQA.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medfm_hf import MODALITIES
from medfm_hf.records import Record
from medfm_hf.sources._common import (
    ImageReadError,
    conform_channels,
    find_dir,
    parse_fractions,
    progress,
    read_image,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "research use (OmniMedVQA); images keep their source dataset's licence"
#: OmniMedVQA ``modality_type`` (normalised: lower case, letters and digits only) -> our modality.
MODALITY_MAP: dict[str, str] = {
    "ctcomputedtomography": "ct",
    "ct": "ct",
    "mrmagneticresonanceimaging": "mri",
    "mri": "mri",
    "mr": "mri",
    "xray": "xray",
    "ultrasound": "ultrasound",
    "dermoscopy": "dermoscopy",
    "fundusphotography": "fundus",
    "octopticalcoherencetomography": "oct",
    "oct": "oct",
    "microscopyimages": "pathology",
    "endoscopy": "endoscopy",
}
LETTERS = "ABCDEFGH"


def normalise_name(name: str) -> str:
    """Lower case, letters and digits only: ``"MR (Mag-netic Resonance Imaging)"`` -> ``"mrmagneticresonanceimaging"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_modality_map(value: str | dict[str, str] | None) -> dict[str, str]:
    """User additions ``"Name=modality;Other=modality"`` -> ``{normalised name: modality}``."""
    if not value:
        return {}
    pairs = value.items() if isinstance(value, dict) else (p.split("=", 1) for p in value.split(";") if p.strip())
    out: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"omnimedvqa: modality_map={value!r} must look like 'Name=modality;Other=modality'")
        name, modality = pair[0].strip(), pair[1].strip()
        if modality not in MODALITIES:
            raise ValueError(f"omnimedvqa: modality_map maps {name!r} to unknown modality {modality!r}; "
                             f"use one of {', '.join(MODALITIES)}")
        out[normalise_name(name)] = modality
    return out


def answer_letter(options: list[str], answer: str) -> str | None:
    """Letter of the option equal to ``answer`` (exact, then case/space-insensitive); ``None`` if none."""
    for i, opt in enumerate(options):
        if opt == answer:
            return LETTERS[i]
    canon = " ".join(answer.lower().split()).rstrip(".")
    matches = [i for i, opt in enumerate(options) if " ".join(opt.lower().split()).rstrip(".") == canon]
    return LETTERS[matches[0]] if len(matches) == 1 else None


def _base(root: Path) -> Path:
    if (root / "QA_information").is_dir():
        return root
    found = find_dir(root, ["QA_information"], depth=2)
    if found is None:
        raise FileNotFoundError(f"omnimedvqa: no QA_information/Open-access/*.json under {root}")
    return found.parent


@register_source(
    "omnimedvqa",
    layout="PATH/QA_information/Open-access/<Dataset>.json + PATH/Images/<Dataset>/...; options modality_map, "
    "unmapped=error|skip",
    licence=LICENCE,
    reference="https://huggingface.co/datasets/foreverbeliever/OmniMedVQA ; Hu et al. CVPR 2024",
)
def load_omnimedvqa(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    modality_map: str | dict[str, str] | None = None,
    unmapped: str = "error",
    **unknown: Any,
) -> list[Record]:
    """OmniMedVQA open-access multiple-choice questions (answer = option letter)."""
    reject_unknown_options("omnimedvqa", unknown)
    if unmapped not in ("error", "skip"):
        raise ValueError(f"omnimedvqa: unmapped={unmapped!r} must be 'error' or 'skip'")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"omnimedvqa: {root} is not a directory")
    base = _base(root)
    qa_dir = base / "QA_information" / "Open-access"
    if not qa_dir.is_dir():
        raise FileNotFoundError(f"omnimedvqa: {qa_dir} is missing (expected QA_information/Open-access/*.json)")
    mapping = {**MODALITY_MAP, **parse_modality_map(modality_map)}
    items: list[tuple[str, dict[str, Any]]] = []
    for jf in sorted(qa_dir.glob("*.json")):
        try:
            data = json.loads(jf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            report.skip(relpath(jf, base), f"unreadable JSON ({exc})")
            continue
        for i, item in enumerate(data if isinstance(data, list) else [data]):
            if not isinstance(item, dict):
                report.skip(f"{jf.name}[{i}]", "not a JSON object")
                continue
            items.append((f"{jf.name}[{i}]", item))
    # Unmapped modality names: one error listing all of them, before any image is read.
    unmapped_names = sorted({str(it.get("modality_type", it.get("modality", ""))) for _, it in items
                             if normalise_name(str(it.get("modality_type", it.get("modality", "")))) not in mapping})
    if unmapped_names and unmapped == "error":
        raise ValueError(
            f"omnimedvqa: modality names with no mapping: {unmapped_names}. Map them with "
            "modality_map='Name=modality;...' (modalities: " + ", ".join(MODALITIES) + ") or pass unmapped=skip"
        )
    rows: list[tuple[str, dict[str, Any], str, str]] = []
    seen_ids: set[str] = set()
    for where, it in items:
        mod_name = str(it.get("modality_type", it.get("modality", "")))
        modality = mapping.get(normalise_name(mod_name))
        if modality is None:
            report.skip(where, f"modality {mod_name!r} has no mapping (unmapped=skip)")
            continue
        rel = str(it.get("image_path", "")).replace("${dataset_root_path}/", "").lstrip("/")
        qid = str(it.get("question_id") or where)
        if not rel or not it.get("question") or it.get("gt_answer") is None:
            report.skip(where, "item lacks image_path, question or gt_answer")
            continue
        if qid in seen_ids:
            report.skip(where, f"duplicate question_id {qid!r}")
            continue
        seen_ids.add(qid)
        rows.append((qid, it, rel, modality))
    splits = resolve_splits({rel for _, _, rel, _ in rows}, source="omnimedvqa", seed=seed, report=report,
                            split_file=split_file, fractions=parse_fractions(fractions))
    records: list[Record] = []
    for qid, it, rel, modality in progress(rows, desc="omnimedvqa"):
        options = []
        for letter in LETTERS:
            opt = it.get(f"option_{letter}")
            if opt is None or str(opt).strip() == "":
                break
            options.append(str(opt).strip())
        if len(options) < 2:
            report.skip(qid, f"only {len(options)} option(s); a multiple-choice item needs at least 2")
            continue
        letter = answer_letter(options, str(it["gt_answer"]).strip())
        if letter is None:
            report.skip(qid, f"gt_answer {it['gt_answer']!r} matches none (or several) of the options {options}")
            continue
        notes: list[str] = []
        try:
            image = conform_channels(read_image(base / rel, notes), modality, notes)
        except ImageReadError as exc:
            report.skip(qid, str(exc))
            continue
        records.append(Record(
            image_id=f"omnimedvqa/{qid}", source="omnimedvqa", modality=modality, task="vqa", image=image,
            split=splits[rel], question=str(it["question"]).strip(), options=options, answer=letter,
            meta={"image_file": rel, "modality_type": it.get("modality_type"), "question_type": it.get("question_type"),
                  "dataset": it.get("dataset"), "gt_answer": it["gt_answer"], "licence": LICENCE, "notes": notes},
        ))
    return records
