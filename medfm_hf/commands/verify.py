"""``medfm-robust verify DIR``: check every file of a build against its manifest (size and SHA-256)."""

from __future__ import annotations

import argparse

NAME = "verify"
HELP = "Check a benchmark build folder against its manifest.json (missing, truncated, corrupt, unlisted files)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder written by `medfm-robust build`")


def run(args: argparse.Namespace) -> int:
    import os

    from medfm_hf.benchmark import layout

    if not os.path.isdir(args.folder):
        raise FileNotFoundError(f"{args.folder} is not a folder")
    problems = layout.verify_folder(args.folder)
    manifest = layout.read_manifest(args.folder) or {}
    if problems:
        for p in problems:
            print(p)
        print(f"{args.folder}: {len(problems)} problems; rerun the same `medfm-robust build` command to repair "
              "the data files (shards that differ from their markers are rebuilt)")
        return 1
    print(f"{args.folder}: {len(manifest.get('files', {}))} files match the manifest "
          f"(data fingerprint {manifest.get('data_fingerprint')})")
    return 0
