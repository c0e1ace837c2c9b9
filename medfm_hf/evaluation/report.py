"""Printing and plotting evaluation results."""

from __future__ import annotations

import pandas as pd


def print_summary(summary: pd.DataFrame) -> None:
    from medfm_hf.dataset_io import format_table

    s = summary.copy()
    for c in s.columns:  # every float column (segmentation: iou, dice, drops; VLM tasks: their metrics)
        if s[c].dtype.kind == "f":
            s[c] = s[c].map(lambda v: f"{v:.4f}")
    print(format_table(s.to_dict("records")))


def severity_curves(stats: pd.DataFrame, path: str, title: str = "") -> str:
    """IoU drop versus level, one line per perturbation family mean and per attack, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    pert = stats[stats["kind"] == "perturbation"]
    if not pert.empty:
        m = pert.groupby("level")["iou_drop"].mean()
        ax.plot(m.index, m.values, "k-o", lw=2.5, label="all perturbations (mean)")
        top = pert.groupby("name")["iou_drop"].mean().sort_values(ascending=False).index[:5]
        for name in top:
            g = pert[pert["name"] == name]
            ax.plot(g["level"], g["iou_drop"], "--", marker=".", label=name)
    for name, g in stats[stats["kind"] == "attack"].groupby("name"):
        ax.plot(g["level"], g["iou_drop"], "-s", lw=2, label=f"{name} (attack)")
    ax.set_xlabel("severity level")
    ax.set_ylabel("IoU drop (clean - perturbed)")
    ax.set_xticks([1, 2, 3, 4, 5])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
