"""``medfm-robust report``: merge results folders into tables, figures, ``report.md`` and ``report.html``.

Output folder::

    report.html            self-contained (figures embedded, sortable tables, no network)
    report.md              the same content; figures linked from figures/
    report.json            inputs, settings, models, tables and figures written
    tables/<name>.csv      full precision; an estimate x becomes x, x_lo, x_hi
    tables/<name>.md|.tex  the same table formatted (LaTeX: booktabs)
    figures/<name>.png|.svg
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from medfm_hf import __version__
from medfm_hf.io import atomic_write_text
from medfm_hf.reporting import plots
from medfm_hf.reporting.formats import write_table
from medfm_hf.reporting.html import Document
from medfm_hf.reporting.load import Results, load_results
from medfm_hf.reporting.stats import DEFAULT_CONFIDENCE, DEFAULT_N_BOOT, Estimate
from medfm_hf.reporting.tables import (
    TaskAnalysis,
    by_modality,
    calibration_by_level,
    strategy_ranking,
)

logger = logging.getLogger(__name__)


@dataclass
class ReportOptions:
    """What ``report`` computes: the mCE reference model, bootstrap resamples, seed and coverage."""

    reference: str | None = None
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    confidence: float = DEFAULT_CONFIDENCE
    title: str = "medfm_hf robustness report"

    def __post_init__(self) -> None:
        if self.n_boot < 100:
            raise ValueError(f"--n-boot must be at least 100 for a 95 % interval, got {self.n_boot}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"--confidence must lie in [0.5, 1), got {self.confidence}")


# (key, caption, columns left out of Markdown/LaTeX/HTML when the report holds a single task)
TABLES = {
    "overview": "Per model: clean score, mean drop, relative drop and robustness AUC over perturbations, mCE "
                "against the reference, mean drop under attack (95 % paired bootstrap CIs)",
    "perturbation_x_model": "Relative drop per perturbation (rows, most damaging first) and model (columns)",
    "by_perturbation": "Per model and perturbation, mean over levels",
    "by_level": "Per model and severity level, mean over perturbations",
    "by_family_level": "Per model, perturbation family and level",
    "by_modality": "Per model and modality (bootstrap within the modality's images)",
    "by_modality_level": "Per model, modality and level",
    "by_cell": "Per model, perturbation and level",
    "attacks": "Per model, attack and budget",
    "paired_tests": "Model A vs model B on the same images: difference of mean drop (positive: A loses more), "
                    "paired bootstrap CI and two-sided p-value",
    "strategy_ranking": "Fine-tuning strategies ranked by relative drop within each base model",
    "vlm_calibration": "VLM tasks: accuracy and expected calibration error by level (0 = clean)",
}


def wide(by_pert: pd.DataFrame, value: str = "rel_drop") -> pd.DataFrame:
    """Perturbations as rows (most damaging first), one column per model holding ``value``."""
    if by_pert.empty:
        return pd.DataFrame()
    frames = []
    for task, t in by_pert.groupby("task", sort=False):
        models = list(dict.fromkeys(t["model"]))
        p = t.pivot(index=["perturbation", "family"], columns="model", values=value)[models]
        key = p.apply(lambda r: np.nanmean([e.value if isinstance(e, Estimate) else np.nan for e in r]), axis=1)
        p = p.loc[key.sort_values(ascending=False).index].reset_index()
        p.insert(0, "task", task)
        frames.append(p)
    out = pd.concat(frames, ignore_index=True)
    out.columns.name = None
    if value in ("rel_drop",):
        out.attrs["percent"] = [c for c in out.columns if c not in ("task", "perturbation", "family")]
    return out


def compute_tables(results: Results, opts: ReportOptions) -> dict[str, pd.DataFrame]:
    """Every table of the report, each concatenated over tasks (a ``task`` column tells them apart)."""
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in TABLES}
    for t, task in enumerate(results.tasks()):
        s = results.samples[results.samples["task"] == task]
        ref = opts.reference if opts.reference in set(s["entry"]) else None
        logger.info("task %s: %d samples, %d images, %d models", task, len(s), s["image_id"].nunique(),
                    s["entry"].nunique())
        an = TaskAnalysis(s, opts.n_boot, np.random.default_rng([opts.seed, 0, t]), opts.confidence)
        ov = an.overview(ref)
        parts["overview"].append(ov)
        parts["by_perturbation"].append(an.by_perturbation())
        parts["by_level"].append(an.by_level())
        parts["by_family_level"].append(an.by_family_level())
        parts["by_cell"].append(an.by_cell("perturbation"))
        parts["attacks"].append(an.by_cell("attack"))
        parts["paired_tests"].append(an.paired_tests(ref))
        mod, mod_level = by_modality(s, opts.n_boot, opts.seed + 1000 * t, opts.confidence)
        parts["by_modality"].append(mod)
        parts["by_modality_level"].append(mod_level)
        parts["strategy_ranking"].append(strategy_ranking(ov, s))
        parts["vlm_calibration"].append(calibration_by_level(an))
    tables = {k: pd.concat([p for p in v if not p.empty], ignore_index=True) if any(not p.empty for p in v)
              else pd.DataFrame() for k, v in parts.items() if k != "perturbation_x_model"}
    tables["perturbation_x_model"] = wide(tables["by_perturbation"])
    return {k: tables[k] for k in TABLES}


def _figures(tables: dict[str, pd.DataFrame], folder: str, colours: dict) -> list[tuple[str, str | None, str]]:
    """(section, png path, caption) of every figure, per task."""
    figs = []
    ov = tables["overview"]
    for task in dict.fromkeys(ov["task"]) if not ov.empty else []:
        def sel(name: str, task: str = task) -> pd.DataFrame:
            t = tables[name]
            return t[t["task"] == task] if not t.empty else t

        p = f"{task}_"
        figs += [
            ("Severity", plots.severity_curves(sel("by_family_level"), "family", folder, p + "severity_by_family",
                                               colours), f"{task}: relative drop by level, per perturbation "
                                                         "family (mean over its perturbations; 95 % CI shaded)"),
            ("Severity", plots.severity_curves(sel("by_modality_level"), "modality", folder,
                                               p + "severity_by_modality", colours),
             f"{task}: relative drop by level, per modality (mean over perturbations; 95 % CI shaded)"),
            ("Perturbations", plots.heatmap(sel("by_perturbation"), folder, p + "heatmap"),
             f"{task}: relative drop, perturbation x model"),
            ("Perturbations", plots.most_damaging(sel("by_perturbation"), folder, p + "most_damaging", colours),
             f"{task}: the {plots.TOP_N} most damaging perturbations (relative drop, 95 % CI)"),
            ("Models", plots.clean_vs_drop(sel("overview"), sel("by_modality"), folder, p + "clean_vs_drop",
                                           colours),
             f"{task}: clean score against relative drop (large: model with CIs; small: per modality)"),
            ("Attacks", plots.attack_curves(sel("attacks"), folder, p + "attack_curves", colours),
             f"{task}: score under attack against the budget ε (95 % CI shaded)"),
            ("VLM calibration", plots.vlm_calibration(sel("vlm_calibration"), folder, p + "vlm_calibration",
                                                      colours),
             f"{task}: accuracy and calibration error against severity level"),
        ]
    return [f for f in figs if f[1]]


def _document(results: Results, tables: dict[str, pd.DataFrame], figures: list, opts: ReportOptions,
              notes: str) -> Document:
    single = results.samples["task"].nunique() == 1
    drop = ("task", "metric") if single else ()
    doc = Document(opts.title)
    s = results.samples
    intro = (f"{len(results.runs)} runs, {s['entry'].nunique()} models, {s['image_id'].nunique()} images, "
             f"{len(s)} samples; tasks: {', '.join(f'`{t}` ({m})' for t, m in s[['task', 'metric']].drop_duplicates().itertuples(index=False))}. "
             f"Intervals: {opts.confidence:.0%} paired bootstrap over images ({opts.n_boot} resamples, seed "
             f"{opts.seed}); clean and perturbed scores of an image are always resampled together.")
    if opts.reference:
        intro += f" mCE reference: `{opts.reference}`."
    doc.markdown(intro)
    if notes:
        doc.markdown(notes)
    doc.heading("Overview")
    doc.table(tables["overview"], TABLES["overview"], drop)
    by_section: dict[str, list] = {}
    for section, path, caption in figures:
        by_section.setdefault(section, []).append((path, caption))
    sections = [("Severity", ["by_level"]), ("Perturbations", ["perturbation_x_model", "by_perturbation"]),
                ("Models", ["by_modality", "paired_tests", "strategy_ranking"]), ("Attacks", ["attacks"]),
                ("VLM calibration", ["vlm_calibration"]), ("Every cell", ["by_cell"])]
    for section, names in sections:
        if not by_section.get(section) and all(tables[n].empty for n in names):
            continue
        doc.heading(section)
        for path, caption in by_section.get(section, []):
            doc.figure(path, caption)
        for n in names:
            doc.table(tables[n], TABLES[n], drop)
    doc.heading("Runs")
    runs = pd.DataFrame([{"run": r.run, "model": r.entry, "task": r.task, "metric": r.metric,
                          "strategy": r.strategy or "–", "dataset": str(r.metadata.get("dataset_path", "–")),
                          "git": str(r.metadata.get("git_revision") or "–")[:10],
                          "finished": str(r.metadata.get("finished", "–"))} for r in results.runs])
    doc.table(runs, "Inputs")
    doc.markdown(f"Made by `medfm-robust report` (medfm_hf {__version__}). Tables as CSV / Markdown / LaTeX "
                 "(booktabs) in `tables/`, figures as PNG and SVG in `figures/`.")
    return doc


def write_report(specs: list[str], out: str, opts: ReportOptions | None = None, labels: dict[str, str] | None = None,
                 notes: str = "", markdown_copies: tuple[str, ...] = ()) -> dict:
    """Load ``specs`` (results folders or Hub ids), compute every table and figure, write them under ``out``.

    ``notes`` is Markdown placed under the title; each path in ``markdown_copies`` gets another copy of
    ``report.md`` with its figure links made relative to that file (the demo's ``REPORT.md``).
    Returns ``{"tables": {...}, "figures": [...], "html": path, "markdown": path}``.
    """
    opts = opts or ReportOptions()
    t0 = time.perf_counter()
    results = load_results(specs, labels)
    entries = results.entries()
    if opts.reference is not None and opts.reference not in entries:
        raise ValueError(f"--reference {opts.reference!r} is not among the models {entries}")
    tables = compute_tables(results, opts)
    os.makedirs(out, exist_ok=True)
    tdir, fdir = os.path.join(out, "tables"), os.path.join(out, "figures")
    written = {}
    drop = ("task", "metric") if len(results.tasks()) == 1 else ()
    for name, df in tables.items():
        if not df.empty:
            written[name] = write_table(df, tdir, name, TABLES[name], drop=drop)
    colours = plots.model_colours(entries)
    figures = _figures(tables, fdir, colours)
    doc = _document(results, tables, figures, opts, notes)
    md_path, html_path = os.path.join(out, "report.md"), os.path.join(out, "report.html")
    atomic_write_text(md_path, doc.to_markdown(out))
    for extra in markdown_copies:
        atomic_write_text(extra, doc.to_markdown(os.path.dirname(os.path.abspath(extra))))
    atomic_write_text(html_path, doc.to_html())
    meta = {"medfm_hf": __version__, "inputs": list(specs), "options": asdict(opts),
            "models": entries, "tasks": results.tasks(), "runs": [r.run for r in results.runs],
            "tables": sorted(written), "figures": [os.path.relpath(p, out) for _, p, _ in figures],
            "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(os.path.join(out, "report.json"), json.dumps(meta, indent=2))
    logger.info("report of %d models written to %s in %.1f s", len(entries), out, meta["seconds"])
    return {"tables": tables, "figures": figures, "html": html_path, "markdown": md_path, "meta": meta}
