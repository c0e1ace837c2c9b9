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
    parser.add_argument("--num-proc", type=int, default=1,
                        help="worker processes per rank (capped at the shards to do and the CPUs)")
    parser.add_argument("--seed", type=int, default=0, help="global seed of the perturbations")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous build with other settings (deletes only the files its manifest lists)")
    parser.add_argument("--refuse-changed", action="store_true",
                        help="refuse (naming the files) instead of rebuilding shards whose inputs changed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.dataset_io import format_table
    from medfm_hf.sources import parse_sources_arg

    sources = [[n, p, o] for n, p, o in parse_sources_arg(args.sources)]
    perts = None if args.perturbations.strip() == "all" else [p.strip() for p in args.perturbations.split(",") if p.strip()]
    modalities = None
    if args.modalities:
        modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    # every setting is checked by build_benchmark (validate_settings) before anything is read or written
    settings = BuildSettings(sources=sources, perturbations=perts, levels=args.levels,
                             max_size=args.max_size, seed=args.seed, modalities=modalities)
    summary = build_benchmark(settings, args.out, num_proc=args.num_proc, overwrite=args.overwrite,
                              progress=not args.no_progress, refuse_changed=args.refuse_changed)
    if summary.get("report") is None:  # a rank other than 0 under accelerate launch: rank 0 reports
        return 0
    for rep in summary["source_reports"]:
        print(rep)
    rep = summary["report"]
    if len(rep):
        by = rep.groupby("perturbation").apply(
            lambda g: {"cells": int(g["cells"].sum()),
                       "in_band": f"{(g['in_band_rate'] * g['cells']).sum() / g['cells'].sum():.0%}",
                       "evals/cell": f"{(g['evaluations_per_cell'] * g['cells']).sum() / g['cells'].sum():.1f}"},
            include_groups=False)
        print(format_table([{"perturbation": k, **v} for k, v in by.items()]))
        total = rep["cells"].sum()
        print(f"in band overall: {(rep['in_band_rate'] * rep['cells']).sum() / total:.1%} of {int(total)} cells")
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} images could not be perturbed and were skipped (see bad_inputs.json)")
    if summary["rebuilt"]:
        print(f"inputs changed: rebuilt {len(summary['rebuilt'])} shards: {', '.join(summary['rebuilt'])}")
    print(f"{summary['records']} clean records, {summary['shards']} shards ({summary['resumed_shards']} resumed) "
          f"in {summary['seconds']:.1f} s -> {args.out}")
    return 0
