"""A results leaderboard as a Hub dataset: one row per (run, model, task, perturbation, level) with the run's
metadata, a ``summary`` config with one row per (task, model), and a card whose table is the leaderboard.

``datasets.load_dataset(folder)`` (or the Hub id after ``--push``) gives the rows back;
``load_dataset(folder, "summary")`` the ranking.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from medfm_hf import __version__
from medfm_hf.io import atomic_write_parquet, atomic_write_text
from medfm_hf.reporting.formats import flat, to_markdown
from medfm_hf.reporting.load import Results, Run, load_results
from medfm_hf.reporting.stats import DEFAULT_N_BOOT
from medfm_hf.reporting.tables import NAN, TaskAnalysis

logger = logging.getLogger(__name__)

ROWS_FILE = "data/leaderboard.parquet"
SUMMARY_FILE = "data/summary.parquet"
META_COLUMNS = ["medfm_hf_version", "git_revision", "dataset", "dataset_fingerprint", "checkpoint",
                "checkpoint_fingerprint", "seeds", "versions", "finished"]


def _find(meta: dict, words: tuple[str, ...]) -> str:
    """The first value in the (nested) run metadata whose key contains all ``words``, as text."""
    stack = [meta]
    while stack:
        d = stack.pop(0)
        for k, v in d.items():
            if isinstance(v, dict):
                stack.append(v)
            elif all(w in k.lower() for w in words) and v not in (None, ""):
                return str(v)
    return ""


def run_metadata(run: Run) -> dict[str, str]:
    """Versions, fingerprints and seeds of a run, as flat text columns."""
    m = run.metadata
    versions = m.get("versions") or {}
    model = m.get("model") or {}
    return {"medfm_hf_version": str(versions.get("medfm_hf") or m.get("medfm_hf") or ""),
            "git_revision": str(m.get("git_revision") or ""),
            "dataset": str(m.get("dataset_path") or m.get("dataset") or ""),
            "dataset_fingerprint": _find(m, ("dataset", "fingerprint")) or _find(m, ("manifest",)),
            "checkpoint": str(model.get("checkpoint") or "") if isinstance(model, dict) else "",
            "checkpoint_fingerprint": _find(m, ("checkpoint", "sha")) or _find(m, ("checkpoint", "fingerprint"))
            or _find(m, ("revision", "checkpoint")),
            "seeds": json.dumps(m.get("seeds") or {}, sort_keys=True),
            "versions": json.dumps(versions, sort_keys=True),
            "finished": str(m.get("finished") or "")}


def leaderboard_rows(results: Results, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (run, model, task, kind, perturbation, level): n, score, clean score, drop with its paired
    CI, relative drop, then the run's metadata."""
    frames = []
    for i, run in enumerate(results.runs):
        s = results.samples[(results.samples["run"] == run.run) & (results.samples["model"] == run.model)]
        an = TaskAnalysis(s, n_boot, np.random.default_rng([seed, 2, i]))
        for e in an.entries():
            ov = an.overview().set_index("model").loc[e]
            rows = [{"kind": "clean", "name": "clean", "family": "clean", "level": 0, "epsilon": np.nan,
                     "score": ov["clean"], "drop": NAN, "rel_drop": NAN}]
            for kind in ("perturbation", "attack"):
                cells = an.by_cell(kind)
                if not cells.empty:
                    rows += cells[cells["model"] == e].to_dict("records")
            t = pd.DataFrame(rows)
            t["images"] = [an.n_images(e, r.kind, r.name) for r in t.itertuples()]
            frame = flat(t.drop(columns=[c for c in ("task", "metric", "model") if c in t.columns]))
            frame.insert(0, "run", run.run)
            frame.insert(1, "model", e)
            frame.insert(2, "base_model", run.model)
            frame.insert(3, "strategy", run.strategy)
            frame.insert(4, "task", an.task)
            frame.insert(5, "metric", an.metric)
            frame = frame.rename(columns={"name": "perturbation"})
            for k, v in run_metadata(run).items():
                frame[k] = v
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    for c in ("drop", "drop_lo", "drop_hi", "rel_drop", "rel_drop_lo", "rel_drop_hi", "epsilon"):
        if c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out["level"] = out["level"].astype(int)
    cols = ["run", "model", "base_model", "strategy", "task", "metric", "kind", "perturbation", "family", "level",
            "epsilon", "images", "score", "score_lo", "score_hi", "drop", "drop_lo", "drop_hi", "rel_drop",
            "rel_drop_lo", "rel_drop_hi", *META_COLUMNS]
    return out[[c for c in cols if c in out.columns]]


def leaderboard_summary(results: Results, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (task, model): clean score, mean score under perturbation, relative drop, AUC (with CIs),
    ranked within each task by the perturbed score (accuracy and robustness together)."""
    frames = []
    for t, task in enumerate(results.tasks()):
        s = results.samples[results.samples["task"] == task]
        an = TaskAnalysis(s, n_boot, np.random.default_rng([seed, 3, t]))
        ov = an.overview()
        if "drop" not in ov:
            continue
        ov["perturbed"] = [type(c)(c.value - d.value, np.nan, np.nan, c.n) for c, d in zip(ov["clean"], ov["drop"])]
        ov = ov.assign(_k=[p.value for p in ov["perturbed"]]).sort_values("_k", ascending=False)
        ov.insert(0, "rank", range(1, len(ov) + 1))
        frames.append(ov.drop(columns=["_k"]))
    if not frames:
        return pd.DataFrame()
    cols = ["rank", "task", "metric", "model", "images", "perturbations", "clean", "perturbed", "drop", "rel_drop",
            "auc", "attack_drop"]
    out = pd.concat(frames, ignore_index=True)
    return out[[c for c in cols if c in out.columns]]


def _card(summary: pd.DataFrame, rows: pd.DataFrame, title: str) -> str:
    table = to_markdown(summary, drop=("perturbed",)) if not summary.empty else "(no perturbed results)"
    runs = rows.drop_duplicates("run")[["run", "model", "task", "dataset", "git_revision", "finished"]]
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: {ROWS_FILE}
- config_name: summary
  data_files:
  - split: train
    path: {SUMMARY_FILE}
tags:
- medfm-robust
- robustness
- leaderboard
---

# {title}

Ranked within each task by the mean score under perturbation (clean − drop). Intervals: 95 % paired bootstrap
over images (clean and perturbed scores of an image resampled together). AUC: area under the relative-score
curve over severity levels (1 = no loss).

{table}

## Load

```python
from datasets import load_dataset
rows = load_dataset("THIS_REPO", split="train")              # one row per (run, model, task, perturbation, level)
summary = load_dataset("THIS_REPO", "summary", split="train")
```

Columns of a row: the run, model, fine-tuning strategy, task and metric; `kind` (clean / perturbation /
attack), `perturbation`, `family`, `level`, `epsilon`; `images`, `score`, `drop`, `rel_drop` with `_lo` / `_hi`
interval bounds; and the run's metadata ({", ".join(f"`{c}`" for c in META_COLUMNS)}).

## Runs

{to_markdown(runs)}

Made by `medfm-robust leaderboard` (medfm_hf {__version__}).
"""


def write_leaderboard(specs: list[str], out: str, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                      title: str = "medfm-robust leaderboard", labels: dict[str, str] | None = None,
                      push: str | None = None, private: bool = False) -> dict:
    """Write the leaderboard dataset folder ``out`` (and push it to the Hub dataset ``push``)."""
    results = load_results(specs, labels)
    rows = leaderboard_rows(results, n_boot, seed)
    summary = leaderboard_summary(results, n_boot, seed)
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    atomic_write_parquet(rows, os.path.join(out, ROWS_FILE))
    atomic_write_parquet(flat(summary) if not summary.empty else pd.DataFrame({"rank": []}),
                         os.path.join(out, SUMMARY_FILE))
    atomic_write_text(os.path.join(out, "README.md"), _card(summary, rows, title))
    url = None
    if push:
        from medfm_hf.benchmark.hub import push_folder

        url = push_folder(out, push, private=private, commit_message="Update the medfm-robust leaderboard")
    logger.info("leaderboard of %d rows (%d runs) in %s", len(rows), len(results.runs), out)
    return {"rows": rows, "summary": summary, "url": url}
