"""finetune.py end to end on a small demo benchmark: outputs, selection on validation only, reload, resume."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from medfm_hf.finetune.data import FinetuneDataError, read_split
from medfm_hf.finetune.load import FinetunedLoadError, load_finetuned
from medfm_hf.finetune.trainer import FinetuneError, run_finetune
from medfm_hf.models import create_segmenter


def _seen(out) -> list[dict]:
    rows = []
    for f in sorted(glob.glob(os.path.join(out, ".medfm", "seen_rank*.jsonl"))):
        rows += [json.loads(line) for line in open(f)]
    return rows


def test_trains_on_train_selects_on_validation_and_never_reads_test(poisoned_bench, make_args, tmp_path,
                                                                     monkeypatch):
    import pyarrow.parquet as pq

    opened: list[str] = []
    real = pq.read_table

    def spy(source, *a, **kw):
        opened.append(str(source))
        return real(source, *a, **kw)

    monkeypatch.setattr(pq, "read_table", spy)
    out = tmp_path / "run"
    res = run_finetune(make_args(poisoned_bench, out, strategy="decoder_only", augment=True,
                                 perturbation_augment="gaussian_noise,rotate", perturbation_levels="2"))
    # the poisoned test split (garbage bytes) would have raised; and only train/validation files were opened
    assert opened and all(os.path.basename(p).startswith(("train-", "validation-")) for p in opened)
    assert res["train_images"] == 12 and res["validation_images"] == 4
    train_ids = {r["image_id"] for r in read_split(poisoned_bench, "train")}
    seen = _seen(out)
    assert [s["step"] for s in seen] == [1, 2, 3, 4]
    assert all(len(s["image_ids"]) == 4 and set(s["image_ids"]) <= train_ids for s in seen)
    log = json.load(open(out / "training_log.json"))
    assert [v["step"] for v in log["validation"]] == [0, 2, 4]
    assert all(v["n"] == 4 for v in log["validation"])
    assert [s["step"] for s in log["steps"]] == [1, 2, 3, 4] and all(s["loss"] > 0 for s in log["steps"])
    best = max(log["validation"], key=lambda v: v["iou"])
    assert res["selected_step"] == best["step"] and res["selected_validation"]["iou"] == best["iou"]
    with pytest.raises(FinetuneDataError, match="only clean/train and clean/validation"):
        read_split(poisoned_bench, "test")


def test_outputs_reload_and_evaluate(demo_bench, make_args, tmp_path):
    out = tmp_path / "dec"
    res = run_finetune(make_args(demo_bench, out, strategy="decoder_only", eval_steps=4))
    cfg = json.load(open(out / "finetune_config.json"))
    assert cfg["format"] == "safetensors" and os.path.exists(out / "model.safetensors")
    assert cfg["model"] == "medsam" and cfg["strategy"] == "decoder_only"
    assert cfg["base_fingerprint"].startswith("sha256:") and cfg["trainable_params"] == res["trainable_params"] > 0
    assert cfg["frozen_unused"] and all("iou_prediction_head" in n for n in cfg["frozen_unused"])
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert all(k.startswith("model.mask_decoder.") for k in saved)
    model = load_finetuned(str(out))
    own = dict(model.named_parameters())
    assert all(torch.equal(own[k], v) for k, v in saved.items())
    # evaluate.py --finetuned DIR, through the evaluator
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.segmentation import evaluate_segmentation

    ev = evaluate_segmentation(EvalArguments(model="medsam", dataset=demo_bench, output=str(tmp_path / "ev"),
                                             finetuned=str(out), configs="none", batch_size=4, no_progress=True,
                                             allow_incomplete=True))
    assert len(ev["results"]) == 4 and ev["results"]["iou"].between(0, 1).all()
    # the run is keyed by the fine-tuned weights' content: retrained weights in the same folder are refused
    from safetensors.torch import save_file

    from medfm_hf.evaluation.plan import EvaluationError

    save_file({k: v + 1e-3 for k, v in saved.items()}, str(out / "model.safetensors"))
    with pytest.raises(EvaluationError, match="finetuned fingerprint"):
        evaluate_segmentation(EvalArguments(model="medsam", dataset=demo_bench, output=str(tmp_path / "ev"),
                                            finetuned=str(out), configs="none", batch_size=4, no_progress=True,
                                            allow_incomplete=True))
    save_file(saved, str(out / "model.safetensors"))
    # another base model is refused by its fingerprint
    other = create_segmenter("medsam", size="tiny", image_size=64, seed=1)
    other.save_pretrained(str(tmp_path / "other"))
    with pytest.raises(FinetunedLoadError, match="not those"):
        load_finetuned(str(out), checkpoint=str(tmp_path / "other"))


def test_lora_output_is_a_peft_folder_that_loads_merged(demo_bench, make_args, tmp_path):
    out = tmp_path / "lora"
    run_finetune(make_args(demo_bench, out, strategy="lora", lora_rank=4, eval_steps=4))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(out / "adapter"))
    assert not (out / "model.safetensors").exists()
    merged = load_finetuned(str(out))
    from peft import PeftModel

    base = create_segmenter("medsam", size="tiny", image_size=64)
    unmerged = PeftModel.from_pretrained(base, str(out / "adapter"))
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in unmerged.named_modules() if n.endswith(".lora_A")}
    wrapped = {n.replace("base_model.model.", "", 1) for n in wrapped}
    assert wrapped == set(json.load(open(out / "finetune_config.json"))["lora_targets"])
    assert any("vision_encoder" in t for t in wrapped) and any("mask_decoder" in t for t in wrapped)
    x = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    b = torch.tensor([[5.0, 6.0, 40.0, 50.0], [10.0, 12.0, 60.0, 58.0]])
    with torch.no_grad():
        assert (merged(x, b) - unmerged(x, b)).abs().max().item() < 1e-5


def test_adapter_output_reloads(demo_bench, make_args, tmp_path):
    out = tmp_path / "adapter"
    run_finetune(make_args(demo_bench, out, strategy="adapter", eval_steps=4, learning_rate=3e-2))
    cfg = json.load(open(out / "finetune_config.json"))
    assert cfg["adapter_blocks"] and cfg["adapter_width"] == 16
    model = load_finetuned(str(out))
    assert any(".ft_adapter." in n for n, _ in model.named_parameters())


def test_resume_after_kill_reproduces_the_uninterrupted_run(demo_bench, make_args, tmp_path, repo_root):
    steps = 8
    common = dict(strategy="decoder_prompt", max_steps=steps, eval_steps=4, save_steps=2)
    ref_out = tmp_path / "ref"
    run_finetune(make_args(demo_bench, ref_out, **common))
    out = tmp_path / "killed"
    a = make_args(demo_bench, out, **common)
    cmd = [sys.executable, os.path.join(repo_root, "finetune.py"), "--model", a.model, "--model_kwargs",
           a.model_kwargs, "--dataset", demo_bench, "--output", str(out), "--strategy", a.strategy,
           "--image_size", "64", "--batch_size", "4", "--max_steps", str(steps), "--eval_steps", "4",
           "--save_steps", "2", "--learning_rate", str(a.learning_rate), "--encoder_blocks", "1",
           "--box_jitter", "0.0", "--no_progress"]
    env = dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo_root, env=env)
    last = out / ".medfm" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (out / "finetune_config.json").exists(), "the kill came too late to test resume"
    killed_at = torch.load(last, weights_only=False)["step"]
    assert 0 < killed_at < steps
    res = run_finetune(a)
    assert res["resumed"] is True and res["steps"] == steps
    ref_log = json.load(open(ref_out / "training_log.json"))
    log = json.load(open(out / "training_log.json"))
    assert [s["step"] for s in log["steps"]] == list(range(1, steps + 1))
    for x, y in zip(ref_log["steps"], log["steps"]):
        assert abs(x["loss"] - y["loss"]) <= 1e-6 * max(1.0, abs(x["loss"])), (x, y)
    assert [v["step"] for v in log["validation"]] == [v["step"] for v in ref_log["validation"]]
    for x, y in zip(ref_log["validation"], log["validation"]):
        assert abs(x["iou"] - y["iou"]) <= 1e-6
    from safetensors.torch import load_file

    w_ref, w = load_file(str(ref_out / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert w_ref.keys() == w.keys() and all(torch.allclose(w_ref[k], w[k], atol=1e-6) for k in w)
    # the per-step record of seen images has no duplicate step after the resume
    assert [s["step"] for s in _seen(out)] == list(range(1, steps + 1))


def test_rerun_of_a_finished_run_returns_it_and_other_settings_are_refused(demo_bench, make_args, tmp_path):
    out = tmp_path / "done"
    first = run_finetune(make_args(demo_bench, out, max_steps=2, eval_steps=2))
    mtime = os.path.getmtime(out / "finetune_config.json")
    assert run_finetune(make_args(demo_bench, out, max_steps=2, eval_steps=2)) == first
    assert os.path.getmtime(out / "finetune_config.json") == mtime
    with pytest.raises(FinetuneError, match="differs in learning_rate"):
        run_finetune(make_args(demo_bench, out, max_steps=2, eval_steps=2, learning_rate=1.0))


def test_bad_arguments_fail_before_any_work(demo_bench, make_args, tmp_path):
    with pytest.raises(FinetuneError, match="--strategy must be one of"):
        run_finetune(make_args(demo_bench, tmp_path / "a", strategy="bitfit"))
    with pytest.raises(FinetuneError, match="fewer than one global batch"):
        run_finetune(make_args(demo_bench, tmp_path / "b", batch_size=64))
    with pytest.raises(FinetuneDataError, match="no clean/train split"):
        run_finetune(make_args(str(tmp_path), tmp_path / "c"))
    with pytest.raises(FinetuneError, match="unknown model"):
        run_finetune(make_args(demo_bench, tmp_path / "d", model="nope"))
