"""``medfm-robust push``: upload a benchmark or results folder to the Hub as a dataset repo."""

from __future__ import annotations

import argparse

NAME = "push"
HELP = "Upload a dataset folder (benchmark build or results) to the Hugging Face Hub."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="the folder to upload (must contain README.md)")
    parser.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to upload to (created if missing)")
    parser.add_argument("--large", action="store_true", help="use upload_large_folder (many/large files, resumable)")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.benchmark.hub import push_folder

    url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision, large=args.large)
    print(f"uploaded {args.folder} to {url}")
    return 0
