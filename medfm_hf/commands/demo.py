"""``medfm-robust demo``: the whole pipeline on the embedded demo set, offline."""

from __future__ import annotations

import argparse
import os

NAME = "demo"
HELP = "Run the pipeline end to end on the embedded demo data (no downloads)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.cli import main

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    print("== step 1: the embedded demo dataset (clean records)")
    rc = main(["demo-data", "--out", os.path.join(out, "medfm-demo")])
    if rc:
        return rc
    print(f"demo finished; outputs in {out}")
    return 0
