"""``medfm-robust report``: tables with confidence intervals, figures and an HTML report from results."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "Merge results folders (or Hub dataset ids) into tables with CIs, figures, report.md and report.html."


def add_results_arguments(parser: argparse.ArgumentParser, out_help: str, title: str) -> None:
    """The arguments ``report`` and ``leaderboard`` share: inputs, output, bootstrap, labels, title."""
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results folders (evaluate.py --output), folders of them, or Hub dataset ids ORG/NAME")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    parser.add_argument("--label", action="append", default=[], metavar="FOLDER=NAME",
                        help="name the model of a results folder in the tables (repeatable)")
    parser.add_argument("--title", default=title, help=f"title (default: {title})")


def configure(parser: argparse.ArgumentParser) -> None:
    add_results_arguments(parser, "output folder of the report", "medfm_hf robustness report")
    parser.add_argument("--reference", default=None, help="model the mCE is normalised to (as named in the tables)")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default 0.95)")


def parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        folder, sep, name = item.partition("=")
        if not sep or not folder or not name:
            raise ValueError(f"--label must look like FOLDER=NAME, got {item!r}")
        labels[folder] = name
    return labels


def run(args: argparse.Namespace) -> int:
    from medfm_hf.reporting import ReportOptions, write_report

    opts = ReportOptions(reference=args.reference, n_boot=args.n_boot, seed=args.seed, confidence=args.confidence,
                         title=args.title)
    res = write_report(args.results, args.out, opts, labels=parse_labels(args.label))
    print(f"{len(res['meta']['tables'])} tables, {len(res['figures'])} figures; open {res['html']}")
    return 0
