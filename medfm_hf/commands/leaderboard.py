"""``medfm-robust leaderboard``: results as one Hub dataset whose card is the leaderboard."""

from __future__ import annotations

import argparse

NAME = "leaderboard"
HELP = "Collect results folders (or Hub ids) into a leaderboard dataset (one row per run/model/perturbation/level)."


def configure(parser: argparse.ArgumentParser) -> None:
    from medfm_hf.commands.report import add_results_arguments

    add_results_arguments(parser, "output folder (a dataset: README.md + data/*.parquet)", "medfm-robust leaderboard")
    parser.add_argument("--push", default=None, metavar="ORG/NAME", help="also upload the folder to this Hub dataset")
    parser.add_argument("--private", action="store_true", help="create the pushed repo private")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.commands.report import parse_labels
    from medfm_hf.reporting.leaderboard import write_leaderboard

    if args.n_boot < 100:
        raise ValueError(f"--n-boot must be at least 100, got {args.n_boot}")
    res = write_leaderboard(args.results, args.out, n_boot=args.n_boot, seed=args.seed, title=args.title,
                            labels=parse_labels(args.label), push=args.push, private=args.private)
    print(f"{len(res['rows'])} rows, {len(res['summary'])} models -> {args.out}"
          + (f"; pushed to {res['url']}" if res["url"] else ""))
    return 0
