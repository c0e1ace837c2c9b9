"""The fine-tuning strategy ranking (``medfm-robust compare-strategies``): its Markdown table and figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medfm_hf.io import atomic_path

__all__ = ["plot_ranking", "ranking_markdown"]


def plot_ranking(table: pd.DataFrame, path: str, title: str) -> None:
    """The strategy ranking as a PNG: clean vs perturbed IoU per strategy, and relative drop vs trainable
    parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(table))
    a.bar(x - 0.2, table["clean_iou"], 0.4, label="clean")
    if "perturbed_iou" in table:
        a.bar(x + 0.2, table["perturbed_iou"], 0.4, label="perturbed (mean)")
    a.set_xticks(x, table["strategy"], rotation=30, ha="right")
    a.set_ylabel("IoU")
    a.set_title("clean vs perturbed IoU")
    a.legend()
    if "rel_iou_drop" in table:
        tp = table["trainable_params"].clip(lower=1)
        b.scatter(tp, table["rel_iou_drop"] * 100)
        for _, r in table.iterrows():
            b.annotate(r["strategy"], (max(r["trainable_params"], 1), r["rel_iou_drop"] * 100), fontsize=8)
        b.set_xscale("log")
        b.set_xlabel("trainable parameters")
        b.set_ylabel("mean relative IoU drop (%)")
        b.set_title("robustness vs trainable parameters")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def ranking_markdown(table: pd.DataFrame) -> str:
    """The ranking as a Markdown table (IoU-type numbers to 4 decimals, counts as integers)."""

    def fmt(col: str, v) -> str:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return ""
        if col in ("rank", "trainable_params", "selected_step"):
            return f"{int(v):,}"
        if col == "train_s":
            return f"{float(v):.0f}"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(fmt(c, r[c]) for c in cols) + " |")
    return "\n".join(lines)
