"""`medfm-robust report`: the files, their content, the VLM and fine-tuning schemas, bad input."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from medfm_hf.cli import main
from medfm_hf.reporting import ReportOptions, write_report
from medfm_hf.reporting.load import load_results
from medfm_hf.reporting.tables import TaskAnalysis, expected_calibration_error

from .conftest import make_results

FIGURES = ["severity_by_family", "severity_by_modality", "heatmap", "most_damaging", "clean_vs_drop", "attack_curves"]
TABLES = ["overview", "perturbation_x_model", "by_perturbation", "by_level", "by_family_level", "by_modality",
          "by_modality_level", "by_cell", "attacks", "paired_tests"]


@pytest.fixture(scope="module")
def report(results_dirs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("report"))
    assert main(["report", *results_dirs, "--out", out, "--reference", "grabcut", "--n-boot", "200",
                 "--label", f"{results_dirs[1]}=small_sam"]) == 0
    return out


def test_report_files(report):
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert os.path.getsize(os.path.join(report, "tables", f"{name}.{ext}")) > 0, (name, ext)
    for name in FIGURES:
        for ext in ("png", "svg"):
            assert os.path.getsize(os.path.join(report, "figures", f"segmentation_{name}.{ext}")) > 1000
    meta = json.load(open(os.path.join(report, "report.json")))
    assert meta["models"] == ["grabcut", "small_sam"] and meta["options"]["reference"] == "grabcut"
    md = open(os.path.join(report, "report.md")).read()
    for name in FIGURES:
        assert f"](figures/segmentation_{name}.png)" in md


def test_html_is_self_contained(report):
    html = open(os.path.join(report, "report.html")).read()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from anywhere
    assert "<script>" in html and 'class="sortable"' in html and "data-v=" in html


def test_overview_numbers(report, results_dirs):
    ov = pd.read_csv(os.path.join(report, "tables", "overview.csv")).set_index("model")
    # drop = mean over perturbations of the mean over levels of (clean - perturbed), computed here directly
    df = pd.read_parquet(os.path.join(results_dirs[0], "grabcut_results.parquet"))
    p = df[df["kind"] == "perturbation"]
    direct = p.groupby(["name", "level"])["iou_drop"].mean().groupby("name").mean().mean()
    assert ov.loc["grabcut", "drop"] == pytest.approx(direct, abs=1e-9)
    assert ov.loc["grabcut", "drop_lo"] < direct < ov.loc["grabcut", "drop_hi"]
    assert ov.loc["grabcut", "clean"] == pytest.approx(df.loc[df["kind"] == "clean", "iou"].mean())
    # the reference's mCE is 1 by construction; the small SAM (slope 0.01 vs 0.03) loses less
    assert ov.loc["grabcut", "mCE"] == pytest.approx(1.0) and ov.loc["grabcut", "rel_mCE"] == pytest.approx(1.0)
    assert ov.loc["small_sam", "rel_mCE"] == pytest.approx(1 / 3, rel=0.15)
    assert np.isnan(ov.loc["grabcut", "attack_drop"]) and ov.loc["small_sam", "attack_drop"] > 0
    tests = pd.read_csv(os.path.join(report, "tables", "paired_tests.csv"))
    row = tests[(tests["perturbation"] == "all") & (tests["quantity"] == "drop")].iloc[0]
    assert row["model_a"] == "small_sam" and row["difference"] < 0 and row["p_value"] < 0.01


def test_auc_known_answer(results_dirs):
    res = load_results(results_dirs[:1])
    an = TaskAnalysis(res.samples, 100, np.random.default_rng(0))
    s = res.samples
    rel = [1.0] + [s[(s["name"] == "rotate") & (s["level"] == lv)]["score"].mean()
                   / s[(s["name"] == "rotate") & (s["level"] == lv)]["clean_score"].mean() for lv in range(1, 6)]
    trapezoid = sum((rel[i] + rel[i + 1]) / 2 for i in range(5)) / 5
    row = an.by_perturbation().set_index("perturbation").loc["rotate"]
    assert row["auc"].value == pytest.approx(trapezoid)


def test_latex_tables_balanced(report):
    import shutil
    import subprocess

    for name in TABLES:
        tex = open(os.path.join(report, "tables", f"{name}.tex")).read()
        stack = []
        for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
            if kind == "begin":
                stack.append(env)
            else:
                assert stack and stack.pop() == env, name
        assert not stack, name
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", tex).group(1)
        body = tex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
        header = tex.split("\\toprule")[1].split("\\midrule")[0].strip()
        for line in [header, *body]:
            assert line.endswith(r"\\") and len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, (name, line)
        assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    if shutil.which("pdflatex"):
        doc = os.path.join(report, "all_tables.tex")
        inputs = "\n".join(rf"\input{{tables/{n}.tex}}" for n in TABLES if n != "by_cell")
        with open(doc, "w") as fh:
            fh.write("\\documentclass{article}\\usepackage[margin=5mm,paperwidth=60cm,paperheight=80cm]{geometry}"
                     "\\usepackage{booktabs}\\begin{document}\n" + inputs + "\n\\end{document}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all_tables.tex"],
                              cwd=report, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]


def _vlm_results(folder: str, model: str, seed: int, acc: float) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(20):
        for q in range(2):
            base = rng.random() < acc
            for kind, name, lv in [("clean", "clean", 0)] + [("perturbation", "jpeg", v) for v in (1, 3, 5)]:
                ok = base and rng.random() > 0.12 * lv
                rows.append({"image_id": f"demo/x_{i}", "sample_id": f"demo/x_{i}#q{q}", "modality": "xray",
                             "source": "demo", "kind": kind, "name": name, "level": lv, "task": "vqa",
                             "correct": int(ok), "confidence": 0.9 - 0.05 * lv})
    os.makedirs(folder, exist_ok=True)
    pd.DataFrame(rows).to_parquet(os.path.join(folder, f"{model}_results.parquet"))


def test_vlm_and_strategy_schemas(tmp_path, results_dirs):
    _vlm_results(str(tmp_path / "vlm_a"), "medgemma", 0, 0.8)
    _vlm_results(str(tmp_path / "vlm_b"), "llava_med", 1, 0.6)
    for strat, slope in (("lora", 0.02), ("full", 0.04)):
        make_results(str(tmp_path / f"ft_{strat}"), "medsam", seed=5, clean_level=0.7, slope=slope,
                     extra_meta={"strategy": strat})
    out = str(tmp_path / "rep")
    res = write_report([str(tmp_path / "vlm_a"), str(tmp_path / "vlm_b"), str(tmp_path / "ft_lora"),
                        str(tmp_path / "ft_full"), results_dirs[0]], out, ReportOptions(n_boot=100))
    t = res["tables"]
    assert set(t["overview"]["task"]) == {"vqa", "segmentation"}
    vlm = t["vlm_calibration"]
    assert set(vlm["level"]) == {0, 1, 3, 5} and set(vlm["model"]) == {"medgemma", "llava_med"}
    assert vlm["accuracy"].map(lambda e: e.lo <= e.value <= e.hi).all()
    rank = t["strategy_ranking"]
    assert list(rank["strategy"]) == ["lora", "full"] and list(rank["rank"]) == [1, 2]
    assert os.path.exists(os.path.join(out, "figures", "vqa_vlm_calibration.svg"))


def test_ece_known_answers():
    assert expected_calibration_error(np.full(10, 0.8), np.r_[np.ones(8), np.zeros(2)]) == pytest.approx(0.0)
    assert expected_calibration_error(np.ones(4), np.array([1, 0, 1, 0])) == pytest.approx(0.5)


def test_bad_input(tmp_path, results_dirs, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a results folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert main(["report", *results_dirs, "--out", str(tmp_path / "o"), "--reference", "nope"]) == 2
    assert "is not among the models" in capsys.readouterr().err
    assert main(["report", *results_dirs, "--out", str(tmp_path / "o"), "--n-boot", "5"]) == 2
    assert main(["report", *results_dirs, "--out", str(tmp_path / "o"), "--label", "x"]) == 2


def test_demo_report(tmp_path):
    """The demo's REPORT.md: LiteMedSAM's narrative and tables on top of the ``report`` command's output."""
    from medfm_hf.commands.demo import DEFAULT_SELECTION
    from medfm_hf.reporting.demo import write_demo_report

    from .conftest import make_results

    runs = {}
    for name, model, kw in (("grabcut", "grabcut", {"seed": 1, "clean_level": 0.5, "slope": 0.03}),
                            ("medsam_lite", "medsam_lite", {"seed": 2, "clean_level": 0.85, "slope": 0.02}),
                            ("medsam_lite_attacks", "medsam_lite", {"seed": 2, "clean_level": 0.85, "slope": 0.02,
                                                                     "attacks": True})):
        folder = str(tmp_path / "results" / name)
        df = make_results(folder, model, seed=kw.pop("seed"), **kw)
        if name == "medsam_lite_attacks":
            df = df[df["kind"] != "perturbation"]
        runs[name] = {"results": df, "output": folder}
    rep = pd.DataFrame({"perturbation": ["rotate", "rotate", "jpeg"], "level": [1, 2, 1], "modality": "ct",
                        "cells": [10, 30, 20], "in_band_rate": [1.0, 0.5, 0.75], "mean_ssim": 0.9,
                        "evaluations_per_cell": [1.0, 2.0, 3.0], "seconds_per_cell": 0.1})
    build = {"report": rep, "records": 140, "shards": 2}
    sel = DEFAULT_SELECTION
    out = tmp_path / "demo"
    out.mkdir()
    path = write_demo_report(str(out), runs, build, 0.7, {"build": 3.0}, sel)
    text = open(path).read()
    clean = runs["medsam_lite"]["results"]
    assert f"Clean IoU: LiteMedSAM {clean.loc[clean.kind == 'clean', 'iou'].mean():.3f}" in text
    assert "## LiteMedSAM under FGSM and PGD" in text and "| pgd |" in text
    assert "](report/figures/segmentation_heatmap.png)" in text and "| medsam_lite |" in text
    assert os.path.exists(out / "report" / "report.html")
    assert json.load(open(out / "report_selection.json"))["images"] == sel.images



def test_clean_vs_drop_draws_an_estimate_outside_its_bootstrap_interval(tmp_path):
    """A percentile CI of a ratio can miss its own point estimate (few images): the bar stops at the estimate."""
    import pandas as pd

    from medfm_hf.reporting.plots import clean_vs_drop
    from medfm_hf.reporting.stats import Estimate

    overview = pd.DataFrame([
        {"model": "a", "metric": "iou", "clean": Estimate(0.95, 0.93, 0.97, 2),
         "rel_drop": Estimate(0.47, 0.49, 0.52, 2)},  # estimate below its interval
        {"model": "b", "metric": "iou", "clean": Estimate(0.80, float("nan"), float("nan"), 1),
         "rel_drop": Estimate(0.10, 0.02, 0.08, 1)},  # estimate above its interval, no clean CI
    ])
    path = clean_vs_drop(overview, pd.DataFrame(), str(tmp_path), "cvd", {"a": "C0", "b": "C1"})
    assert path and (tmp_path / os.path.basename(path)).stat().st_size > 1000
