"""Evaluation reliability: runs keyed by dataset and checkpoint fingerprints, --overwrite, validation before work,
integrity of what is read, one-line errors (reliability probe)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from medfm_hf.cli import main
from medfm_hf.evaluation.args import EvalArguments
from medfm_hf.evaluation.plan import EvaluationError, make_plan
from medfm_hf.evaluation.runner import evaluate

from .conftest import build, free_port, write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrel")
    src = write_folder(root / "src")
    out = root / "bench"
    build(src, out)
    return root, src, out


def _args(dataset, output, **kw) -> EvalArguments:
    base = dict(model="grabcut", dataset=str(dataset), output=str(output), levels="1,3", batch_size=2, limit=2,
                no_progress=True)
    base.update(kw)
    return EvalArguments(**base)


def _results(out, model="grabcut") -> pd.DataFrame:
    return pd.read_parquet(os.path.join(out, f"{model}_results.parquet")).drop(columns=["seconds"])


# ---- B4: a rebuilt benchmark is never mixed with old parts -------------------------------------------------


def test_rebuilt_benchmark_is_refused_then_overwrite_starts_afresh(bench, tmp_path):
    _root, src, _ = bench
    data = tmp_path / "bench"
    build(src, data)
    out = tmp_path / "res"
    evaluate(_args(data, out))
    old_fp = json.loads((out / "run.json").read_text())["dataset"]["fingerprint"]
    build(src, data, seed=7, overwrite=True)  # same folder, other content
    with pytest.raises(EvaluationError, match=rf"dataset fingerprint {old_fp} -> [0-9a-f]{{16}}.*--overwrite"):
        evaluate(_args(data, out))
    evaluate(_args(data, out, overwrite=True))
    fresh = tmp_path / "fresh"
    evaluate(_args(data, fresh))
    pd.testing.assert_frame_equal(_results(out), _results(fresh))
    assert json.loads((out / "run.json").read_text())["dataset"]["fingerprint"] != old_fp


def test_run_json_and_parts_record_the_fingerprints(bench, tmp_path):
    _, _, data = bench
    out = tmp_path / "res"
    evaluate(_args(data, out))
    run = json.loads((out / "run.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    assert run["dataset"]["fingerprint"] == manifest["data_fingerprint"]
    assert run["dataset"]["complete"] is True and run["model"]["fingerprint"] == "none"
    parts = sorted((out / ".medfm" / "parts").glob("*.parquet"))
    assert parts
    for p in parts:
        meta = pq.read_schema(p).metadata
        assert meta[b"medfm_run_key"].decode() == run["run_key"]
        assert meta[b"medfm_dataset_fingerprint"].decode() == manifest["data_fingerprint"]


# ---- B5: a replaced checkpoint at the same path is detected ---------------------------------------------------


def test_replaced_checkpoint_is_refused_with_both_fingerprints(bench, tmp_path):
    from medfm_hf.evaluation.runner import _prepare_output

    _, _, data = bench
    ckpt = tmp_path / "weights.pth"
    ckpt.write_bytes(b"first weights")
    out = tmp_path / "res"
    plan, _ = make_plan(_args(data, out, model="sam", checkpoint=str(ckpt)))
    _prepare_output(plan)  # what a run records before its first batch
    first = plan.fingerprints["checkpoint"]
    assert first.startswith("sha256:")
    ckpt.write_bytes(b"other weights")
    with pytest.raises(EvaluationError, match=rf"checkpoint fingerprint {first} -> sha256:"):
        make_plan(_args(data, out, model="sam", checkpoint=str(ckpt)))
    again, _ = make_plan(_args(data, out, model="sam", checkpoint=str(ckpt), overwrite=True))
    assert again.run_key != plan.run_key


def test_same_folder_spelled_differently_resumes(bench, tmp_path, monkeypatch):
    root, _, data = bench
    out = tmp_path / "res"
    evaluate(_args(data, out))
    monkeypatch.chdir(root)
    res = evaluate(_args("bench", out))  # relative spelling of the same dataset: same run, nothing redone
    assert json.loads((out / ".medfm" / "rank0.json").read_text())["processed"] == []
    assert len(res["results"]) == len(_results(out))


# ---- validation before any work ---------------------------------------------------------------------------


def test_bogus_step_rule_is_rejected_before_any_work(bench, tmp_path):
    _, _, data = bench
    out = tmp_path / "res"
    with pytest.raises(EvaluationError, match="--step_rule must be one of standard, reference"):
        evaluate(_args(data, out, model="sam", attacks="pgd", step_rule="bogus", model_kwargs='{"size": "tiny"}'))
    assert not out.exists()


def test_config_outside_levels_is_an_error_not_a_silent_drop(bench, tmp_path):
    _, _, data = bench
    with pytest.raises(EvaluationError, match="only levels outside --levels"):
        evaluate(_args(data, tmp_path / "r", configs="contrast_l3", levels="1"))


def test_unknown_model_kwargs_key_is_refused_before_building(bench, tmp_path):
    _, _, data = bench
    with pytest.raises(EvaluationError, match="takes no option 'sise'"):
        make_plan(_args(data, tmp_path / "r", model="sam", model_kwargs='{"sise": "tiny"}'))


# ---- what is read is verified -----------------------------------------------------------------------------


def test_bit_flipped_shard_is_named_before_any_work(bench, tmp_path):
    _, _, data = bench
    copy = tmp_path / "bench"
    shutil.copytree(data, copy)
    shard = copy / "data" / "contrast_l3" / "test-folder.parquet"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    shard.write_bytes(bytes(raw))
    out = tmp_path / "res"
    with pytest.raises(EvaluationError, match=r"config 'contrast_l3': data/contrast_l3/test-folder\.parquet does not "
                                              r"match the build manifest"):
        evaluate(_args(copy, out))
    assert not (out / ".medfm" / "parts").exists()


def test_incomplete_build_is_refused_unless_allowed_and_recorded(bench, tmp_path):
    _, _, data = bench
    copy = tmp_path / "bench"
    shutil.copytree(data, copy)
    os.remove(copy / "manifest.json")
    state = json.loads((copy / ".medfm" / "build.json").read_text())
    (copy / ".medfm" / "build.json").write_text(json.dumps(dict(state, complete=False)))
    shutil.rmtree(copy / "data" / "contrast_l3")  # as if killed before this shard
    with pytest.raises(EvaluationError, match="not a complete build.*--allow_incomplete"):
        evaluate(_args(copy, tmp_path / "r1"))
    res = evaluate(_args(copy, tmp_path / "r2", allow_incomplete=True))
    run = res["run"]
    assert run["dataset"]["complete"] is False and run["dataset"]["allow_incomplete"] is True
    assert "contrast_l3" not in run["configs"] and "contrast_l1" in run["configs"]


# ---- one-line errors --------------------------------------------------------------------------------------


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("extra, msg", [
    (["--levels", "abc"], "'abc' is not a level"),
    (["--model", "sam", "--model-kwargs", '{"sise": "tiny"}'], "takes no option 'sise'"),
    (["--mixed-precision", "fp8"], "--mixed_precision must be one of"),
])
def test_evaluate_cli_errors_are_one_line(bench, tmp_path, capsys, extra, msg):
    _, _, data = bench
    rc = main(["evaluate", "--model", "grabcut", "--dataset", str(data), "--output", str(tmp_path / "r"),
               "--no-progress", *extra])
    assert rc == 2 and msg in _one_line(capsys)


def test_output_that_is_a_file_is_one_line(bench, tmp_path, capsys):
    _, _, data = bench
    f = tmp_path / "afile"
    f.write_text("x")
    rc = main(["evaluate", "--model", "grabcut", "--dataset", str(data), "--output", str(f), "--no-progress"])
    assert rc == 2 and "is a file" in _one_line(capsys)


def test_unreadable_checkpoint_is_one_line(bench, tmp_path, capsys):
    _, _, data = bench
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    rc = main(["evaluate", "--model", "sam", "--checkpoint", str(bad), "--model-kwargs", '{"size": "tiny"}',
               "--dataset", str(data), "--output", str(tmp_path / "r"), "--no-progress", "--limit", "1"])
    assert rc == 2 and "could not build model 'sam'" in _one_line(capsys)


def test_push_offline_is_one_line(bench, capsys, monkeypatch):
    _, _, data = bench
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["push", str(data), "--repo-id", "someone/bench"])
    assert rc == 2 and "push: error:" in _one_line(capsys)


def test_corrupt_run_state_is_a_clear_error(bench, tmp_path):
    _, _, data = bench
    out = tmp_path / "r"
    (out / ".medfm").mkdir(parents=True)
    (out / ".medfm" / "eval_settings.json").write_text("{broken")
    with pytest.raises(EvaluationError, match="not valid JSON.*--overwrite"):
        make_plan(_args(data, out))


def test_accelerate_launch_error_printed_once_by_rank_zero(bench, tmp_path):
    _, _, data = bench
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", free_port(),
           os.path.join(ROOT, "evaluate.py"),
           "--model", "grabcut", "--dataset", str(data), "--output", str(tmp_path / "r"), "--levels", "abc"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert text.count("evaluate.py: error:") == 1, text[-3000:]
    assert "'abc' is not a level" in text
    assert "ValueError" not in text and 'File "' + os.path.join(ROOT, "medfm_hf") not in text


def test_disk_full_during_evaluation_is_one_line_and_resumable(bench, tmp_path, monkeypatch, capsys):
    import contextlib

    import medfm_hf.io as mio

    _, _, data = bench
    real = mio.atomic_path

    @contextlib.contextmanager
    def full(path):
        with real(path) as tmp:
            yield tmp
            if ".medfm/parts" in str(path).replace(os.sep, "/"):
                raise OSError(28, "No space left on device", tmp)

    out = tmp_path / "r"
    argv = ["evaluate", "--model", "grabcut", "--dataset", str(data), "--output", str(out), "--levels", "1",
            "--limit", "1", "--no-progress"]
    monkeypatch.setattr(mio, "atomic_path", full)
    assert main(argv) == 2
    assert "No space left on device" in _one_line(capsys)
    assert not list(out.rglob("*.tmp-*"))
    monkeypatch.setattr(mio, "atomic_path", real)
    assert main(argv) == 0  # the same command finishes once there is space
    assert (out / "grabcut_results.parquet").exists()
