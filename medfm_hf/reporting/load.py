"""Read results folders (local or on the Hub) into one per-sample table with a fixed schema.

A results folder holds one ``<model>_results.parquet`` (or ``.csv``) per evaluated model and a ``run.json``.
Every row is one sample: an image (and for VLM tasks one question about it) under one condition. The
columns this package reads are:

========================  ==========================================================================
column                    meaning
========================  ==========================================================================
``image_id``              the image; the bootstrap resamples these (required)
``kind``                  ``clean`` / ``perturbation`` / ``attack`` (required)
``name``, ``level``       perturbation or attack name and severity level (``clean``, 0 for clean rows)
``modality``, ``source``  of the image (``modality`` required)
``epsilon``               attack budget (attack rows)
``iou`` / ``dice``        segmentation scores per image
``correct``               VLM tasks: 1 if the answer was right, else 0 (accuracy is its mean)
``confidence``            VLM tasks: the model's probability for its answer (for calibration / ECE)
``score``                 any other per-sample score, higher is better (its name in ``run.json["metric"]``)
``sample_id``             VLM tasks: the question; pairs a perturbed row with its clean row
``task``, ``strategy``    task (default ``segmentation``) and fine-tuning strategy (default none)
========================  ==========================================================================

The loaded table adds ``run``, ``model``, ``entry`` (the label a model gets in tables), ``metric``,
``family`` (the perturbation's family, ``generic`` for those of every modality, ``attack`` for attacks),
``score`` (the task's primary metric) and ``clean_score`` (the score of the same sample on the clean image).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED = ("image_id", "kind", "modality")
KINDS = ("clean", "perturbation", "attack")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Run:
    """One model's results in one folder, and the run's metadata (``run.json``)."""

    run: str
    path: str
    model: str
    task: str
    strategy: str
    metric: str
    entry: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass
class Results:
    """All loaded samples (``samples``) and the runs they came from."""

    samples: pd.DataFrame
    runs: list[Run]

    def tasks(self) -> list[str]:
        return [str(t) for t in pd.unique(self.samples["task"])]

    def entries(self, task: str | None = None) -> list[str]:
        s = self.samples if task is None else self.samples[self.samples["task"] == task]
        return [str(e) for e in pd.unique(s["entry"])]


def resolve(spec: str, cache_dir: str | None = None) -> str:
    """A local folder for ``spec``: the folder itself, or a Hub dataset repo ``ORG/NAME`` downloaded with
    ``huggingface_hub.snapshot_download`` (results files and ``run.json`` only)."""
    if os.path.isdir(spec):
        return spec
    if os.path.exists(spec):
        raise ValueError(f"{spec} is a file; pass a results folder (the --output of evaluate.py)")
    if not _REPO_ID.match(spec):
        raise FileNotFoundError(f"{spec} is neither a results folder nor a Hub dataset id (ORG/NAME)")
    from huggingface_hub import snapshot_download

    logger.info("downloading results %s from the Hub", spec)
    try:
        return snapshot_download(repo_id=spec, repo_type="dataset", cache_dir=cache_dir,
                                 allow_patterns=["*_results.parquet", "*_results.csv", "*.json",
                                                 "*/*_results.parquet", "*/*_results.csv", "*/*.json"])
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds; the user needs one line
        raise FileNotFoundError(f"{spec} is not a local folder and could not be downloaded from the Hub "
                                f"({type(exc).__name__}: {exc})") from exc


def _result_files(folder: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, "*_results.parquet")))
    have = {f[: -len(".parquet")] for f in files}
    files += [f for f in sorted(glob.glob(os.path.join(folder, "*_results.csv"))) if f[: -len(".csv")] not in have]
    return files


def find_result_files(folder: str) -> list[str]:
    """The results files of ``folder``, or of its immediate sub-folders when it has none itself."""
    files = _result_files(folder)
    if not files:
        for sub in sorted(os.listdir(folder)):
            if os.path.isdir(os.path.join(folder, sub)) and not sub.startswith("."):
                files += _result_files(os.path.join(folder, sub))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *_results.parquet or *_results.csv; pass the --output "
                                "folder of evaluate.py (or a folder of such folders)")
    return files


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def _family(name: str, kind: str) -> str:
    if kind == "attack":
        return "attack"
    if kind == "clean":
        return "clean"
    from medfm_hf.perturbations import get_perturbation

    try:
        family = get_perturbation(name).family
    except (KeyError, ValueError):
        return "other"
    return "generic" if family == "base" else family


def _normalise(df: pd.DataFrame, path: str, meta: dict) -> tuple[pd.DataFrame, str, str, str]:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; is it a medfm_hf results file?")
    df = df.copy()
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"{path}: unknown kind values {bad}; expected {', '.join(KINDS)}")
    for col, default in (("name", "clean"), ("level", 0), ("source", ""), ("epsilon", np.nan)):
        if col not in df.columns:
            df[col] = default
    df["level"] = pd.to_numeric(df["level"], errors="coerce").fillna(0).astype(int)
    df["epsilon"] = pd.to_numeric(df["epsilon"], errors="coerce")
    task = str(df["task"].iloc[0]) if "task" in df.columns and len(df) else str(meta.get("task", "segmentation"))
    if "iou" in df.columns:
        metric, score = "iou", df["iou"]
    elif "correct" in df.columns:
        metric, score = "accuracy", df["correct"]
    elif "score" in df.columns:
        metric, score = str(meta.get("metric", "score")), df["score"]
    else:
        raise ValueError(f"{path} has no score column (iou, correct or score)")
    df["score"] = pd.to_numeric(score, errors="coerce").astype(float)
    strategy = meta.get("strategy") or (meta.get("finetune") or {}).get("strategy") or ""
    if "strategy" not in df.columns:
        df["strategy"] = str(strategy)
    df["strategy"] = df["strategy"].fillna("").astype(str)
    df["task"] = task
    df["metric"] = metric
    key = "sample_id" if "sample_id" in df.columns else "image_id"
    clean = df[df["kind"] == "clean"]
    if clean.empty:
        raise ValueError(f"{path} has no clean rows; drops need the clean score of every image")
    if clean.duplicated([key, "strategy"]).any():
        raise ValueError(f"{path} has several clean rows for one {key}; the results folder is corrupt")
    ref = clean[[key, "strategy", "score"]].rename(columns={"score": "clean_score"})
    df = df.drop(columns=["clean_score", "family"], errors="ignore").merge(ref, on=[key, "strategy"], how="left")
    pairs = df[["name", "kind"]].drop_duplicates()
    pairs["family"] = [_family(n, k) for n, k in pairs.itertuples(index=False)]
    df = df.merge(pairs, on=["name", "kind"], how="left")
    return df, task, metric, str(strategy)


def load_results(specs: list[str], labels: dict[str, str] | None = None, cache_dir: str | None = None) -> Results:
    """Load every results file under ``specs`` (folders, folders of folders, Hub dataset ids).

    ``labels`` maps a results folder (as given or its basename) to the name its model gets in tables;
    otherwise a model is named after itself, with the folder added when a name would repeat.
    """
    if not specs:
        raise ValueError("give at least one results folder")
    labels = labels or {}
    frames, runs = [], []
    seen_runs: set[str] = set()
    for spec in specs:
        root = resolve(spec, cache_dir)
        for path in find_result_files(root):
            folder = os.path.dirname(os.path.abspath(path))
            meta = _read_json(os.path.join(folder, "run.json"))
            df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
            model = os.path.basename(path).rsplit("_results.", 1)[0]
            df, task, metric, strategy = _normalise(df, path, meta)
            run_id = os.path.basename(folder.rstrip(os.sep)) or folder
            base, k = run_id, 2
            while run_id in seen_runs:
                run_id, k = f"{base}-{k}", k + 1
            seen_runs.add(run_id)
            label = labels.get(spec) or labels.get(folder) or labels.get(os.path.basename(folder)) or ""
            df["run"], df["model"], df["_label"] = run_id, model, label
            frames.append(df)
            runs.append(Run(run_id, folder, model, task, strategy, metric, metadata=meta))
            logger.info("loaded %d rows of %s (%s) from %s", len(df), model, task, path)
    samples = pd.concat(frames, ignore_index=True)
    samples["entry"] = _entry_labels(samples)
    for r in runs:
        r.entry = ", ".join(dict.fromkeys(samples.loc[samples["run"] == r.run, "entry"]))
    return Results(samples.drop(columns=["_label"]), runs)


def _entry_labels(s: pd.DataFrame) -> pd.Series:
    """``model`` (``model/strategy`` for fine-tuned), or the given label; with the run added if it repeats."""
    base = np.where(s["_label"] != "", s["_label"], s["model"])
    base = pd.Series(base, index=s.index).where(s["strategy"] == "", lambda x: x + "/" + s["strategy"])
    runs_per = pd.DataFrame({"b": base, "task": s["task"], "run": s["run"]}).drop_duplicates()
    dup = runs_per.groupby(["task", "b"])["run"].transform("size") > 1
    repeated = set(zip(runs_per.loc[dup, "task"], runs_per.loc[dup, "b"]))
    if not repeated:
        return base
    mask = pd.Series([(t, b) in repeated for t, b in zip(s["task"], base)], index=s.index)
    return base.where(~mask, base + " (" + s["run"] + ")")
