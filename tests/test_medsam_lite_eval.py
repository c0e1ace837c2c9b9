"""LiteMedSAM through ``accelerate launch evaluate.py`` with FGSM/PGD: one and two processes give identical
per-sample results (a tiny built benchmark: one CT image, one perturbation, level 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from medfm_hf.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("litebench") / "medfm-robust"
    assert main(["build", "--sources", "demo", "--out", str(out), "--modalities", "ct",
                 "--perturbations", "gaussian_noise", "--levels", "1", "--no-progress"]) == 0
    return str(out)


def _launch(bench: str, out: str, config: list[str], pythonpath: str) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *config, os.path.join(ROOT, "evaluate.py"),
           "--model", "medsam_lite", "--dataset", bench, "--output", out, "--attacks", "fgsm,pgd",
           "--levels", "1", "--limit", "1", "--batch_size", "1", "--no_progress"]
    # evaluate.py drops its own folder from sys.path (it shadows the `evaluate` library), so the package under
    # test is put on the path through a link in another folder: the run imports this checkout's medfm_hf.
    env = {**os.environ, "PYTHONPATH": pythonpath}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return pd.read_parquet(os.path.join(out, "medsam_lite_results.parquet")).drop(columns=["seconds"])


@pytest.mark.slow
def test_one_and_two_processes_identical(bench, tmp_path):
    link_dir = tmp_path / "pythonpath"
    link_dir.mkdir()
    os.symlink(os.path.join(ROOT, "medfm_hf"), link_dir / "medfm_hf")
    one = _launch(bench, str(tmp_path / "one"), ["--num_processes", "1", "--cpu"], str(link_dir))
    two = _launch(bench, str(tmp_path / "two"),
                  ["--config_file", os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml")], str(link_dir))
    assert sorted(one["kind"].unique()) == ["attack", "clean", "perturbation"]
    assert set(one.loc[one.kind == "attack", "name"]) == {"fgsm", "pgd"}
    pd.testing.assert_frame_equal(one, two)
    clean = one.loc[one.kind == "clean", "iou"].item()
    assert clean > 0.5  # the pretrained model segments the demo lesion (a random model would not)


def test_images_option_selects_clean_test_images(bench, tmp_path):
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.plan import EvaluationError
    from medfm_hf.evaluation.runner import plan_run

    def ids(images):
        args = EvalArguments(model="medsam_lite", dataset=bench, output=str(tmp_path), images=images, levels="1",
                             attacks="fgsm")
        plan, _ = plan_run(args)
        return sorted({it.image_id for b in plan.batches for it in b.items})

    assert ids("all") == [f"demo/ct_0{i}" for i in range(6)]
    assert ids("demo/ct_0[03], demo/ct_05") == ["demo/ct_00", "demo/ct_03", "demo/ct_05"]
    with pytest.raises(EvaluationError, match="--images demo/mri_\\* matches no clean test image"):
        ids("demo/ct_00,demo/mri_*")
