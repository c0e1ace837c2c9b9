"""``medfm-robust perturbations``: the perturbation catalog as a table."""

from __future__ import annotations

import argparse

from medfm_hf import MODALITIES

NAME = "perturbations"
HELP = "List the registered perturbations (name, family, strength range, modalities, description)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modality", choices=MODALITIES, default=None,
        help="only the perturbations that apply to this modality (the base ones plus its own)",
    )


def catalog_rows(modality: str | None = None) -> list[dict[str, str]]:
    """One dict per registered perturbation (the columns of the table)."""
    from medfm_hf.perturbations import get_perturbation, list_perturbations

    rows = []
    for name in list_perturbations(modality):
        p = get_perturbation(name)
        mods = "all" if set(p.modalities) == set(MODALITIES) else ",".join(p.modalities)
        notes = []
        if p.geometric:
            notes.append("moves mask")
        if p.colour_only:
            notes.append("colour only")
        rows.append({
            "name": name,
            "family": p.family,
            "strength": f"{p.strength_range[0]:g}-{p.strength_range[1]:g}",
            "modalities": mods,
            "notes": ", ".join(notes),
            "description": p.description,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    rows = catalog_rows(args.modality)
    cols = ["name", "family", "strength", "modalities", "notes", "description"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]} if rows else {}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths.get(c, 0)) for c in cols).rstrip())
    scope = f"for {args.modality}" if args.modality else "registered"
    print(f"\n{len(rows)} perturbations {scope}")
    return 0
