"""Tables as CSV (value, lo, hi columns), Markdown and LaTeX (booktabs), and as plain text for the terminal."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from medfm_hf.dataset_io import format_table
from medfm_hf.io import atomic_write_text
from medfm_hf.reporting.stats import Estimate

HEADERS = {"rel_drop": "rel. drop", "auc": "AUC", "rel_mCE": "rel. mCE", "attack_drop": "attack drop",
           "p_value": "p", "model_a": "model A", "model_b": "model B", "mean_confidence": "mean conf.",
           "ece": "ECE", "in_band_rate": "in band", "mean_ssim": "mean SSIM"}
PERCENT = {"rel_drop"}


def _is_estimate_column(s: pd.Series) -> bool:
    return bool(len(s)) and s.map(lambda v: isinstance(v, Estimate)).all()


def flat(df: pd.DataFrame) -> pd.DataFrame:
    """Estimate columns ``x`` become three numeric columns ``x``, ``x_lo``, ``x_hi`` (for CSV and parquet)."""
    out = {}
    for c in df.columns:
        if _is_estimate_column(df[c]):
            out[c] = df[c].map(lambda e: e.value)
            out[f"{c}_lo"] = df[c].map(lambda e: e.lo)
            out[f"{c}_hi"] = df[c].map(lambda e: e.hi)
        else:
            out[c] = df[c]
    return pd.DataFrame(out, index=df.index)


def _cell(v: object, col: str, digits: int, percent: frozenset = frozenset(PERCENT)) -> str:
    if isinstance(v, Estimate):
        return v.format(digits, percent=col in percent)
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–"
        if col == "p_value":
            return f"{v:.3f}" if v >= 0.001 else "<0.001"
        return f"{v:.{digits + 1}f}"
    return str(v)


def display(df: pd.DataFrame, digits: int = 3, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every cell as text: estimates as ``v [lo, hi]`` (in % for relative drops and the columns named in
    ``df.attrs["percent"]``), floats with ``digits + 1`` decimals."""
    cols = [c for c in df.columns if c not in drop]
    percent = frozenset(PERCENT) | frozenset(df.attrs.get("percent", ()))
    return pd.DataFrame({HEADERS.get(c, c): [_cell(v, c, digits, percent) for v in df[c]] for c in cols})


def to_markdown(df: pd.DataFrame, digits: int = 3, drop: tuple[str, ...] = ()) -> str:
    if df.empty:
        return "(no rows)"
    return format_table(display(df, digits, drop).to_dict("records"), markdown=True)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "", digits: int = 3,
             drop: tuple[str, ...] = ()) -> str:
    """A ``table`` with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); text columns left-aligned,
    numbers right-aligned."""
    d = display(df, digits, drop)
    numeric = [not pd.api.types.is_object_dtype(df[c]) or _is_estimate_column(df[c])
               for c in df.columns if c not in drop]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in d.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in d.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, folder: str, name: str, caption: str = "", digits: int = 3,
                drop: tuple[str, ...] = ()) -> dict[str, str]:
    """``name.csv`` (flat, full precision), ``name.md`` and ``name.tex`` in ``folder``; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {ext: os.path.join(folder, f"{name}.{ext}") for ext in ("csv", "md", "tex")}
    atomic_write_text(paths["csv"], flat(df).to_csv(index=False, float_format="%.10g"))
    atomic_write_text(paths["md"], to_markdown(df, digits, drop) + "\n")
    atomic_write_text(paths["tex"], to_latex(df, caption, f"tab:{name}", digits, drop))
    return paths


def round4(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as 4-decimal strings (the per-run summary tables)."""
    d = df.copy()
    for c in d.columns:
        if d[c].dtype.kind == "f":
            d[c] = d[c].map(lambda v: f"{v:.4f}")
    return d


def summary_text(summary: pd.DataFrame, markdown: bool = False) -> str:
    """A run's ``SUMMARY`` table as aligned text (or Markdown)."""
    return format_table(round4(summary).to_dict("records"), markdown=markdown)
