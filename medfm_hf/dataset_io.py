"""Writing clean records as a Hub-ready dataset folder (``README.md`` + ``data/<config>/<split>-*.parquet``).

The folder is exactly what the Hub serves, so ``load_dataset(folder, "clean")`` works locally and after
upload. Files are written atomically (temporary name, then rename) and deterministically (same records
-> same bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from medfm_hf import MODALITIES
from medfm_hf.io import atomic_write_text  # noqa: F401 - re-exported for callers of the old home
from medfm_hf.records import SPLITS, Record, write_records_parquet


def split_path(out: str, config: str, split: str) -> str:
    """Where ``config``'s ``split`` is written (one file per split; see :mod:`medfm_hf.benchmark.layout`)."""
    from medfm_hf.benchmark import layout

    return layout.path(out, layout.split_file_of(config, split))


def write_clean_config(records: Iterable[Record], out: str, config: str = "clean") -> dict[str, int]:
    """Write ``records`` to one parquet file per split of ``config`` (``layout.split_file_of``); rows per split."""
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for rec in records:
        rec.validate()
        by_split[rec.split].append(rec)
    counts = {}
    for split, recs in by_split.items():
        if not recs:
            continue
        recs.sort(key=lambda r: r.image_id)
        write_records_parquet(recs, split_path(out, config, split))
        counts[split] = len(recs)
    return counts


def modality_table(records: Iterable[Record]) -> list[dict[str, object]]:
    """Rows of ``modality, train, validation, test, total`` (only modalities present), in MODALITIES order."""
    counts = Counter((r.modality, r.split) for r in records)
    rows = []
    for m in MODALITIES:
        row = {"modality": m, **{s: counts.get((m, s), 0) for s in SPLITS}}
        row["total"] = sum(row[s] for s in SPLITS)  # type: ignore[misc]
        if row["total"]:
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]], markdown: bool = False) -> str:
    """Plain-text (or markdown) table of dict rows with the same keys."""
    if not rows:
        return "(empty)"
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*keys)] + [fmt.format(*c) for c in cells])
