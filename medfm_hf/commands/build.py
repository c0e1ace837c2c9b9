"""``medfm-robust build``: make the perturbed benchmark as a Hub-ready dataset folder."""

from __future__ import annotations

import argparse

NAME = "build"
HELP = "Build the benchmark dataset folder (clean + one config per perturbation and level)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", default="demo",
                        help="comma-separated sources: demo, folder=PATH:modality, NAME=PATH (see `medfm-robust sources`)")
    parser.add_argument("--out", default="medfm-robust", help="output folder (default: medfm-robust)")
    parser.add_argument("--perturbations", default="all", help="'all' or comma-separated names")
    parser.add_argument("--levels", default="1-5", help="severity levels, e.g. 1-5 or 1,3,5")
    parser.add_argument("--modalities", default=None, help="only these modalities (comma-separated)")
    parser.add_argument("--max-size", type=int, default=512, help="downscale images whose longest side is larger")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="global seed of the perturbations")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder built with other settings")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medfm_hf import MODALITIES
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.benchmark.features import parse_levels
    from medfm_hf.dataset_io import format_table
    from medfm_hf.reporting.calibration import by_perturbation, in_band_overall
    from medfm_hf.sources import parse_sources_arg

    sources = [[n, p, o] for n, p, o in parse_sources_arg(args.sources)]
    perts = None if args.perturbations.strip() == "all" else [p.strip() for p in args.perturbations.split(",") if p.strip()]
    modalities = None
    if args.modalities:
        modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            raise ValueError(f"unknown modalities {bad}; expected some of {', '.join(MODALITIES)}")
    if args.max_size < 32:
        raise ValueError("--max-size must be at least 32")
    if args.num_proc < 1:
        raise ValueError("--num-proc must be >= 1")
    settings = BuildSettings(sources=sources, perturbations=perts, levels=parse_levels(args.levels),
                             max_size=args.max_size, seed=args.seed, modalities=modalities)
    summary = build_benchmark(settings, args.out, num_proc=args.num_proc, overwrite=args.overwrite,
                              progress=not args.no_progress)
    for rep in summary["source_reports"]:
        print(rep)
    rep = summary["report"]
    if len(rep):
        by = by_perturbation(rep)
        by["in_band"] = by["in_band"].map(lambda v: f"{v:.0%}")
        by["evals_per_cell"] = by["evals_per_cell"].map(lambda v: f"{v:.1f}")
        print(format_table(by.rename(columns={"evals_per_cell": "evals/cell"}).to_dict("records")))
        print(f"in band overall: {in_band_overall(rep):.1%} of {int(rep['cells'].sum())} cells")
    print(f"{summary['records']} clean records, {summary['shards']} shards ({summary['resumed_shards']} resumed) "
          f"in {summary['seconds']:.1f} s -> {args.out}")
    return 0
