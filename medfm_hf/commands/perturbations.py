"""``medfm-robust perturbations``: the perturbation catalog as a table."""

from __future__ import annotations

import argparse

from medfm_hf import MODALITIES

NAME = "perturbations"
HELP = "List the registered perturbations (name, family, strength range, physical ceiling, modalities, description)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--modality", choices=MODALITIES, default=None,
        help="only the perturbations that apply to this modality (the base ones plus its own)",
    )


def run(args: argparse.Namespace) -> int:
    from medfm_hf.perturbations.registry import catalog_rows

    rows = catalog_rows(args.modality)
    cols = ["name", "family", "strength", "ceiling", "modalities", "notes", "description"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]} if rows else {}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths.get(c, 0)) for c in cols).rstrip())
    scope = f"for {args.modality}" if args.modality else "registered"
    print(f"\n{len(rows)} perturbations {scope}")
    return 0
