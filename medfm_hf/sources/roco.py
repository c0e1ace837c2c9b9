"""ROCO / ROCOv2 radiology image captioning: ``--sources roco=PATH``.

Three layouts are recognised under ``PATH`` (searched recursively):

* **Parquet release** (e.g. the Hugging Face ``ROCOv2-radiology`` copy)::

      PATH/data/{train,validation,test}-<k>-of-<n>.parquet   columns image{bytes,path}, image_id, caption[, cui]

* **ROCOv2 (Zenodo)**::

      PATH/{train,valid,test}_captions.csv     columns ID, Caption
      PATH/{train,valid,test}_concepts.csv     columns ID, CUIs ("C0040405;C0817096")   (optional)
      PATH/{train,valid,test}/<ID>.jpg         (images anywhere under PATH, found by ID)

* **ROCO v1** (``data/<split>/radiology/``): ``captions.txt`` (``ID<TAB>caption``), optional
  ``cuis.txt`` (``ID<TAB>CUI...``) and ``images/<ID>.jpg``.

Splits are the release's (file-name prefix or folder: ``train``, ``valid``/``validation``/``val``,
``test``); captions with no split in their name get a seeded draw recorded in ``split_file``.

Modality: from the UMLS CUIs when given (:data:`CUI_MODALITY`: CT, MRI, ultrasound, plain X-ray,
angiography), else from caption keywords (:data:`CAPTION_KEYWORDS`; exactly one modality must
match), else from the ``modality`` option (``--sources roco=PATH`` with ``modality=xray``); an item
whose modality stays unknown is skipped with the reason.

Licence: ROCOv2 is CC BY 4.0 (Rückert et al., Scientific Data 11:688, 2024; https://zenodo.org/records/10821435);
ROCO v1 images come from the PMC Open Access subset with their articles' licences (Pelka et al., 2018;
https://github.com/razorx89/roco-dataset).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medfm_hf.records import Record
from medfm_hf.sources._common import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    check_modality,
    conform_channels,
    decode_image,
    parse_fractions,
    progress,
    read_image,
    reject_unknown_options,
    relpath,
    resolve_splits,
)
from medfm_hf.sources.base import SourceReport, register_source

LICENCE = "ROCOv2: CC BY 4.0; ROCO: PMC Open Access article licences"
#: UMLS concepts used as modality labels in ROCOv2 / ImageCLEFmedical Caption.
CUI_MODALITY: dict[str, str] = {
    "C0040405": "ct",  # X-Ray Computed Tomography
    "C0024485": "mri",  # Magnetic Resonance Imaging
    "C0041618": "ultrasound",  # Ultrasonography
    "C1306645": "xray",  # Plain x-ray
    "C0043299": "xray",  # Diagnostic radiologic examination (X-ray)
    "C0002978": "angiography",  # Angiogram
}
#: Caption keyword patterns (case-insensitive) per modality.
CAPTION_KEYWORDS: dict[str, str] = {
    "ct": r"\bCT\b|\bCTA\b|computed tomograph",
    "mri": r"\bMRI?\b|magnetic resonance|\bT[12][- ]weighted|\bFLAIR\b",
    "ultrasound": r"ultrasound|ultrasonograph|sonograph|echocardiogra|doppler",
    "xray": r"x-ray|\bradiograph|\bCXR\b",
    "angiography": r"angiogra",
}
_SPLIT_WORDS = (("validation", "validation"), ("valid", "validation"), ("val", "validation"),
                ("train", "train"), ("test", "test"))
_CUI_RE = re.compile(r"C\d{7}")


def split_from_name(*names: str) -> str | None:
    """The split named by a file-name prefix or folder name (``train``, ``valid``..., ``test``)."""
    for name in names:
        token = re.split(r"[_\-. ]", name.lower())[0]
        for word, split in _SPLIT_WORDS:
            if token == word:
                return split
    return None


def modality_from(cuis: list[str], caption: str, default: str | None) -> tuple[str | None, str]:
    """``(modality, how)``: from CUIs, else one caption keyword match, else ``default``."""
    from_cui = {CUI_MODALITY[c] for c in cuis if c in CUI_MODALITY}
    if len(from_cui) == 1:
        return from_cui.pop(), "cui"
    hits = {m for m, pat in CAPTION_KEYWORDS.items() if re.search(pat, caption, re.IGNORECASE)}
    if len(hits) == 1:
        return hits.pop(), "caption"
    return (default, "option") if default else (None, "cui" if from_cui else "caption" if hits else "none")


def _table(path: Path, *, tsv: bool) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    if tsv:
        rows = []
        for line in text.splitlines():
            if line.strip():
                first, _, rest = line.partition("\t")
                rows.append({"id": first.strip(), "value": rest.strip()})
        return rows
    reader = csv.DictReader(io.StringIO(text))
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]


def _pick(row: dict[str, str], *names: str) -> str | None:
    for n in names:
        if n in row and row[n] != "":
            return row[n]
    return None


def _text_items(root: Path, report: SourceReport) -> Iterator[dict[str, Any]]:
    """Caption items of the CSV (ROCOv2) and TSV (ROCO v1) layouts."""
    index: dict[str, list[Path]] = {}
    for p in root.rglob("*"):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            index.setdefault(p.stem, []).append(p)
    caption_files = sorted(p for p in root.rglob("*") if p.is_file() and "captions" in p.name.lower()
                           and p.suffix.lower() in (".csv", ".txt"))
    for cf in caption_files:
        tsv = cf.suffix.lower() == ".txt"
        prefix = cf.name.lower().split("captions")[0]
        split = split_from_name(cf.name, *reversed(cf.relative_to(root).parts[:-1]))
        try:
            caps = _table(cf, tsv=tsv)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            report.skip(relpath(cf, root), f"unreadable captions file ({exc})")
            continue
        cuis: dict[str, list[str]] = {}
        for concept in (sorted(cf.parent.glob(f"{prefix}concepts*.csv")) if not tsv else [cf.parent / "cuis.txt"]):
            if not concept.exists():
                continue
            try:
                for r in _table(concept, tsv=tsv):
                    key = r.get("id") or ""
                    cuis.setdefault(key, []).extend(_CUI_RE.findall(_pick(r, "value", "cuis", "cui", "concepts") or ""))
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                report.flag(relpath(concept, root), f"unreadable concepts file ({exc}); captions used alone")
        for i, r in enumerate(caps):
            key = _pick(r, "id", "image_id", "name")
            caption = _pick(r, "value", "caption", "captions")
            where = f"{relpath(cf, root)}:{i + 2 if not tsv else i + 1}"
            if not key or not caption:
                report.skip(where, "row without an image id or caption")
                continue
            files = index.get(key, [])
            if len(files) != 1:
                report.skip(key, "no image file found for this id" if not files else
                            f"{len(files)} image files share this id: {[relpath(f, root) for f in files]}")
                continue
            yield {"id": key, "caption": caption, "cuis": cuis.get(key, []), "split": split,
                   "file": files[0], "bytes": None}


def _parquet_items(root: Path, files: list[Path], report: SourceReport) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for pf in files:
        split = split_from_name(pf.name)
        try:
            table = pq.read_table(pf)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            report.skip(relpath(pf, root), f"unreadable parquet file ({type(exc).__name__}: {exc})")
            continue
        cols = set(table.column_names)
        if not {"image", "caption"} <= cols:
            report.skip(relpath(pf, root), f"parquet file lacks 'image' and 'caption' columns (has {sorted(cols)})")
            continue
        for i, row in enumerate(table.to_pylist()):
            key = str(row.get("image_id") or row.get("id") or f"{pf.stem}_{i}")
            img = row.get("image") or {}
            cui_val = row.get("cui") or row.get("cuis") or []
            cuis = _CUI_RE.findall(cui_val if isinstance(cui_val, str) else " ".join(map(str, cui_val)))
            if not isinstance(img, dict) or not img.get("bytes"):
                report.skip(key, f"row {i} of {pf.name} has no image bytes")
                continue
            yield {"id": key, "caption": (row.get("caption") or "").strip(), "cuis": cuis, "split": split,
                   "file": pf, "bytes": img["bytes"]}


@register_source(
    "roco",
    layout="PATH/**/<split>-*.parquet (image, image_id, caption[, cui])  or  PATH/<split>_captions.csv (ID, Caption) "
    "[+ <split>_concepts.csv] + images by ID  or  ROCO v1 captions.txt/cuis.txt/images/; option modality (fallback)",
    licence=LICENCE,
    reference="https://zenodo.org/records/10821435 (ROCOv2) ; https://github.com/razorx89/roco-dataset (ROCO)",
)
def load_roco(
    path: str,
    *,
    seed: int = 0,
    report: SourceReport,
    split_file: str | None = None,
    fractions: str | None = None,
    modality: str | None = None,
    **unknown: Any,
) -> list[Record]:
    """ROCO / ROCOv2 radiology images with captions (task ``caption``)."""
    reject_unknown_options("roco", unknown)
    default = check_modality(modality, source="roco") if modality else None
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"roco: {root} is not a directory")
    parquets = sorted(root.rglob("*.parquet"))
    items = list(_parquet_items(root, parquets, report) if parquets else _text_items(root, report))
    if not items and not report.issues:
        raise FileNotFoundError(f"roco: no *.parquet, *_captions.csv or captions.txt under {root}")
    unique: dict[str, dict[str, Any]] = {}
    for it in items:
        if it["id"] in unique:
            report.skip(it["id"], "duplicate image id; kept the first")
            continue
        unique[it["id"]] = it
    official = {k: it["split"] for k, it in unique.items() if it["split"]}
    splits = resolve_splits(unique, source="roco", seed=seed, report=report, split_file=split_file,
                            official=official, fractions=parse_fractions(fractions))
    records: list[Record] = []
    for key, it in progress(sorted(unique.items()), desc="roco"):
        if not it["caption"]:
            report.skip(key, "empty caption")
            continue
        mod, how = modality_from(it["cuis"], it["caption"], default)
        if mod is None:
            report.skip(key, f"modality not determinable from CUIs {it['cuis']} or the caption ({how}); "
                             "pass modality=<name> to set a fallback")
            continue
        notes: list[str] = []
        try:
            raw = decode_image(it["bytes"], key, notes) if it["bytes"] is not None else read_image(it["file"], notes)
            image = conform_channels(raw, mod, notes)
        except ImageReadError as exc:
            report.skip(key, str(exc))
            continue
        records.append(Record(
            image_id=f"roco/{key}", source="roco", modality=mod, task="caption", image=image, split=splits[key],
            caption=it["caption"],
            meta={"image_file": relpath(it["file"], root), "cuis": it["cuis"], "modality_from": how,
                  "licence": LICENCE, "notes": notes},
        ))
    return records
