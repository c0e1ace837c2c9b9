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
    parser.add_argument("--ct-window", default=None, metavar="CENTRE,WIDTH",
                        help="HU window of CT images that record none (8-bit sources); default 40,400 (soft tissue)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous build with other settings (deletes only the files its manifest lists)")
    parser.add_argument("--refuse-changed", action="store_true",
                        help="refuse (naming the files) instead of rebuilding shards whose inputs changed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.benchmark.build import BuildSettings, build_benchmark
    from medfm_hf.dataset_io import format_table
    from medfm_hf.reporting.calibration import by_perturbation, in_band_overall
    from medfm_hf.sources import parse_sources_arg

    sources = [[n, p, o] for n, p, o in parse_sources_arg(args.sources)]
    perts = None if args.perturbations.strip() == "all" else [p.strip() for p in args.perturbations.split(",") if p.strip()]
    modalities = None
    if args.modalities:
        modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    # every setting is checked by build_benchmark (validate_settings) before anything is read or written
    settings = BuildSettings(sources=sources, perturbations=perts, levels=args.levels,
                             max_size=args.max_size, seed=args.seed, modalities=modalities,
                             ct_window=_ct_window(args.ct_window))
    summary = build_benchmark(settings, args.out, num_proc=args.num_proc, overwrite=args.overwrite,
                              progress=not args.no_progress, refuse_changed=args.refuse_changed)
    if summary.get("report") is None:  # a rank other than 0 under accelerate launch: rank 0 reports
        return 0
    for rep in summary["source_reports"]:
        print(rep)
    rep = summary["report"]
    if len(rep):
        by = by_perturbation(rep)
        by["in_band"] = by["in_band"].map(lambda v: f"{v:.0%}")
        by["evals_per_cell"] = by["evals_per_cell"].map(lambda v: f"{v:.1f}")
        print(format_table(by.rename(columns={"evals_per_cell": "evals/cell"}).to_dict("records")))
        print(f"in band overall: {in_band_overall(rep):.1%} of {int(rep['cells'].sum())} cells")
    if summary["skipped"]:
        print(f"{len(summary['skipped'])} images could not be perturbed and were skipped (see bad_inputs.json)")
    if summary["rebuilt"]:
        print(f"inputs changed: rebuilt {len(summary['rebuilt'])} shards: {', '.join(summary['rebuilt'])}")
    print(f"{summary['records']} clean records, {summary['shards']} shards ({summary['resumed_shards']} resumed) "
          f"in {summary['seconds']:.1f} s -> {args.out}")
    return 0


def _ct_window(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from medfm_hf.benchmark.build import BuildError

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BuildError(f"--ct-window must be CENTRE,WIDTH in HU (e.g. 40,400), got {text!r}") from None
