"""The Accelerate-driven segmentation evaluator (issue: evaluator)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from medfm_hf.cli import main
from medfm_hf.evaluation.args import EvalArguments
from medfm_hf.evaluation.data import EvaluationError
from medfm_hf.evaluation.segmentation import evaluate_segmentation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = '{"size": "tiny", "image_size": 128}'


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalbench") / "medfm-robust"
    assert main(["build", "--sources", "demo", "--out", str(out), "--modalities", "ct,fundus",
                 "--perturbations", "gaussian_noise,translate", "--levels", "1,3", "--no-progress"]) == 0
    return str(out)


def _args(bench, out, **kw):
    base = dict(model="sam", dataset=bench, output=str(out), model_kwargs=TINY, attacks="fgsm,pgd", levels="1,3",
                batch_size=4, no_progress=True)
    base.update(kw)
    return EvalArguments(**base)


def _results(out, model="sam"):
    return pd.read_parquet(os.path.join(out, f"{model}_results.parquet")).drop(columns=["seconds"])


@pytest.fixture(scope="module")
def single(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    res = evaluate_segmentation(_args(bench, out))
    return out, res


def test_results_files_and_join(single):
    out, res = single
    df = _results(out)
    for f in ("sam_results.parquet", "sam_results.csv", "sam_SUMMARY.csv", "sam_STATS_BY_LEVEL.csv", "run.json",
              "README.md"):
        assert os.path.exists(os.path.join(out, f)), f
    # 12 clean images; 2 perturbations x 2 levels x 12; 2 attacks x 2 levels x 12
    assert (df["kind"] == "clean").sum() == 12
    assert (df["kind"] == "perturbation").sum() == 48
    assert (df["kind"] == "attack").sum() == 48
    assert not df.duplicated(["kind", "name", "level", "image_id"]).any()
    clean = df[df.kind == "clean"].set_index("image_id")["iou"]
    other = df[df.kind != "clean"]
    assert (other["clean_iou"] == other["image_id"].map(clean)).all()
    assert ((other["clean_iou"] - other["iou"] - other["iou_drop"]).abs() < 1e-12).all()
    att = df[df.kind == "attack"]
    assert set(att["epsilon"].round(6)) == {round(2 / 255, 6), round(6 / 255, 6)}
    pert = df[df.kind == "perturbation"]
    assert pert["ssim"].notna().all() and pert["strength"].notna().all()
    summary = pd.read_csv(os.path.join(out, "sam_SUMMARY.csv"))
    assert list(summary["name"])[0] == "Clean" and list(summary["name"])[-2:] == ["Avg", "Delta"]
    assert set(summary["name"]) >= {"gaussian_noise", "translate", "fgsm", "pgd"}
    stats = pd.read_csv(os.path.join(out, "sam_STATS_BY_LEVEL.csv"))
    assert len(stats) == 8
    run = json.load(open(os.path.join(out, "run.json")))
    assert run["versions"]["torch"] and run["hardware"]["num_processes"] == 1
    assert run["arguments"]["attacks"] == "fgsm,pgd" and run["samples"] == len(df)


def test_rerun_skips_everything(single, bench):
    out, _ = single
    before = _results(out)
    parts = sorted(glob.glob(os.path.join(out, ".medfm", "parts", "*.parquet")))
    mtimes = [os.path.getmtime(p) for p in parts]
    evaluate_segmentation(_args(bench, out))
    assert [os.path.getmtime(p) for p in parts] == mtimes
    rank = json.load(open(os.path.join(out, ".medfm", "rank0.json")))
    assert rank["processed"] == []
    pd.testing.assert_frame_equal(before, _results(out))


def test_two_processes_identical(single, bench, tmp_path):
    out1, _ = single
    out2 = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"), os.path.join(ROOT, "evaluate.py"),
           "--model", "sam", "--dataset", bench, "--output", str(out2), "--model_kwargs", TINY,
           "--attacks", "fgsm,pgd", "--levels", "1,3", "--batch_size", "4", "--no_progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    pd.testing.assert_frame_equal(_results(out1), _results(out2))
    ranks = [json.load(open(p)) for p in sorted(glob.glob(str(out2 / ".medfm" / "rank*.json")))]
    assert [r["world"] for r in ranks] == [2, 2]
    a, b = (set(r["assigned"]) for r in ranks)
    assert a and b and not (a & b)
    assert all(set(r["processed"]) == set(r["assigned"]) for r in ranks)
    assert json.load(open(out2 / "run.json"))["hardware"]["num_processes"] == 2


def test_interrupted_run_resumes(single, bench, tmp_path):
    out1, _ = single
    out = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(ROOT, "evaluate.py"), "--model", "sam", "--dataset", bench, "--output",
           str(out), "--model_kwargs", TINY, "--attacks", "fgsm,pgd", "--levels", "1,3", "--batch_size", "4",
           "--no_progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and len(glob.glob(str(out / ".medfm" / "parts" / "*.parquet"))) < 6:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_parts = len(glob.glob(str(out / ".medfm" / "parts" / "*.parquet")))
    assert 6 <= n_parts < 30, n_parts
    assert not os.path.exists(out / "sam_results.parquet")
    evaluate_segmentation(_args(bench, out))
    pd.testing.assert_frame_equal(_results(out1), _results(out))


def test_cli_same_arguments(bench, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["evaluate", "--model", "grabcut", "--dataset", bench, "--output", str(out), "--configs",
               "translate_l*", "--limit", "3", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Clean" in text and "translate" in text
    df = _results(out, "grabcut")
    assert set(df["image_id"]) == set(sorted(df["image_id"].unique())[:3])
    assert set(df["name"]) == {"clean", "translate"}


@pytest.mark.parametrize("kw, msg", [
    (dict(model="nosuch"), "unknown model"),
    (dict(checkpoint="/nonexistent/medsam_vit_b.pth"), "does not exist"),
    (dict(configs="ct_metal_l3"), "not in"),
    (dict(attacks="cw"), "unknown attacks"),
    (dict(model="grabcut", model_kwargs="{}"), "not differentiable"),
    (dict(levels="0-9"), "levels"),
])
def test_errors_before_any_work(bench, tmp_path, kw, msg):
    out = tmp_path / "err"
    with pytest.raises((EvaluationError, ValueError), match=msg):
        evaluate_segmentation(_args(bench, out, **kw))
    assert not glob.glob(str(out / ".medfm" / "parts" / "*"))


def test_dataset_without_clean(tmp_path):
    (tmp_path / "ds" / "data" / "gaussian_noise_l1").mkdir(parents=True)
    with pytest.raises(EvaluationError, match="no 'clean' config"):
        evaluate_segmentation(_args(str(tmp_path / "ds"), tmp_path / "o"))


def test_other_settings_refused(single, bench):
    out, _ = single
    with pytest.raises(EvaluationError, match="other settings"):
        evaluate_segmentation(_args(bench, out, batch_size=2))


def test_import_evaluate_from_repo_root_gets_the_library():
    code = "import evaluate, os; print(os.path.dirname(evaluate.__file__)); print(callable(evaluate.load))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    where, ok = res.stdout.split()
    assert "site-packages" in where and os.path.abspath(where) != ROOT and ok == "True"


def test_evaluate_script_help_runs_from_root():
    res = subprocess.run([sys.executable, "evaluate.py", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 0 and "--attacks" in res.stdout
