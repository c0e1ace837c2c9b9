"""finetune.py --task grounding on tiny random Gemma 3 / LLaVA models: LoRA placement, validation-only selection,
resume after a kill, accumulation and checkpointing, 1 vs 2 processes, loading, the comparison table.

The tiny models' frozen, tied output embeddings keep their answers near-uniform noise whatever LoRA learns, so
their real validation Acc@0.5 stays 0 for a few steps (the log records it). Where a test needs a step other
than 0 to win the selection, it keeps the real validation and replaces only the Acc@0.5 it returns by a
scripted curve, and checks that the exported adapter holds exactly the weights of the winning step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields

import pytest
import torch

from medfm_hf.finetune import vlm_grounding
from medfm_hf.finetune.args import FinetuneArguments
from medfm_hf.finetune.load import FinetunedLoadError
from medfm_hf.finetune.trainer import FinetuneError
from medfm_hf.finetune.vlm_args import LM_PATTERN, VLMGroundingArguments
from medfm_hf.finetune.vlm_grounding import load_finetuned_vlm, run_grounding_finetune
from medfm_hf.vlm import create_vlm

#: 1 vs 2 processes (and 1 vs 2 accumulation micro-batches): same samples per step; DDP averages the ranks'
#: gradients (each scaled so that their sum is the global token mean), one process takes the global mean
#: directly -> only the float summation order differs. Losses agree to a relative 1e-5; after 2 Adam steps of
#: lr 1e-2 the LoRA weights agree to 1e-5 absolute (measured: 7.5e-8 accumulation, 2.4e-7 two processes, up to
#: 3.4e-6 with an earlier tiny model; Adam divides tiny gradients by their own scale, which amplifies rounding). Gradient checkpointing alone is bit-identical (measured).
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gargs(dataset, output, **kw) -> tuple[FinetuneArguments, VLMGroundingArguments]:
    a = dict(model="medgemma", model_kwargs='{"size": "tiny"}', strategy="lora", dataset=dataset,
             output=str(output), batch_size=4, max_steps=4, eval_steps=2, save_steps=1, learning_rate=1e-2,
             lr_scheduler="constant", no_progress=True)
    v = dict(task="grounding", max_new_tokens=24)
    vnames = {f.name for f in fields(VLMGroundingArguments)}
    for k, val in kw.items():
        (v if k in vnames else a)[k] = val
    return FinetuneArguments(**a), VLMGroundingArguments(**v)


def cli(a: FinetuneArguments, v: VLMGroundingArguments) -> list[str]:
    out = ["--task", "grounding"]
    defaults = {**{f.name: f.default for f in fields(FinetuneArguments)},
                **{f.name: f.default for f in fields(VLMGroundingArguments)}}
    for obj in (a, v):
        for f in fields(obj):
            val = getattr(obj, f.name)
            if f.name == "task" or (f.name != "model" and val == defaults.get(f.name)):
                continue
            if isinstance(val, bool):
                if val:
                    out.append(f"--{f.name}")
                continue
            out += [f"--{f.name}", str(val)]
    return out


def _env(repo_root):
    return dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def _scripted(monkeypatch, curve: dict[int, float]):
    """Keep the real validation; replace the Acc@0.5 it returns by ``curve[step]`` (step = call order)."""
    real = vlm_grounding.validate_grounding
    calls: list[dict] = []

    def fake(vlm, dataset, accelerator, batch_size, max_new_tokens):
        v = real(vlm, dataset, accelerator, batch_size, max_new_tokens)
        calls.append(dict(v))
        v["acc@0.5"] = curve[sorted(curve)[len(calls) - 1]]
        return v

    monkeypatch.setattr(vlm_grounding, "validate_grounding", fake)
    return calls


def _snapshot_at(out, step: int, store: dict):
    def cb(s: int) -> None:
        if s == step:
            store.update(torch.load(os.path.join(out, ".medfm", "last.pt"), weights_only=False)["trainable"])
    return cb


def _adapter_params(vlm, folder) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    m = PeftModel.from_pretrained(vlm.model, os.path.join(folder, "adapter"))
    return {n: p.detach().clone() for n, p in m.named_parameters() if "lora_" in n or "modules_to_save" in n}


def test_selects_on_validation_only_and_lora_stays_in_the_language_model(poisoned_bench, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    opened: list[str] = []
    real_read = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda src, *a, **k: (opened.append(str(src)), real_read(src, *a, **k))[1])
    calls = _scripted(monkeypatch, {0: 0.0, 2: 0.5, 4: 0.25})
    out = tmp_path / "gemma"
    at2: dict = {}
    res = run_grounding_finetune(*gargs(poisoned_bench, out), step_callback=_snapshot_at(out, 2, at2))
    # only train/validation files were opened (the poisoned test split would have raised)
    assert opened and all(os.path.basename(p).startswith(("train-", "validation-")) for p in opened)
    assert res["train_images"] == 12 and res["validation_images"] == 4
    assert [c["n"] for c in calls] == [4, 4, 4]  # the real validation ran on the whole validation split
    log = json.load(open(out / "training_log.json"))
    assert [v["step"] for v in log["validation"]] == [0, 2, 4]
    assert res["selected_step"] == 2 and res["selected_validation"]["acc@0.5"] == 0.5
    assert log["steps"][-1]["loss"] < log["steps"][0]["loss"]
    # the exported adapter holds exactly the weights of the selected step (not the last one)
    base = create_vlm("medgemma", size="tiny")
    saved = _adapter_params(base, out)
    assert saved.keys() == at2.keys() and all(torch.equal(saved[k], at2[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)
    # LoRA placement: 2 layers x 7 projections of the language model, nothing in the vision tower
    targets = res["lora_targets"]
    assert len(targets) == 14 and all(".language_model." in t for t in targets)
    assert res["lora"]["target_regex"] == LM_PATTERN
    # merged fine-tune: vision tower and projector bit-identical to the base, the language model changed
    tuned = load_finetuned_vlm(str(out))
    fresh = dict(create_vlm("medgemma", size="tiny").model.named_parameters())
    merged = dict(tuned.model.named_parameters())
    assert merged.keys() == fresh.keys()
    vis = [k for k in merged if "vision_tower" in k or "multi_modal_projector" in k]
    assert vis and all(torch.equal(merged[k], fresh[k]) for k in vis)
    assert not torch.equal(merged["model.language_model.layers.0.self_attn.q_proj.weight"],
                           fresh["model.language_model.layers.0.self_attn.q_proj.weight"])
    assert tuned.model_id != base.model_id and "+lora:" in tuned.model_id
    # why a regex: the plain name list also wraps the vision tower's attention
    from peft import LoraConfig, get_peft_model

    plain = get_peft_model(create_vlm("medgemma", size="tiny").model,
                           LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    assert any("vision_tower" in n and n.endswith("lora_A") for n, _ in plain.named_modules())


def test_projector_and_vision_tower_are_adapted_when_asked(demo_bench, tmp_path, monkeypatch):
    _scripted(monkeypatch, {0: 0.0, 2: 0.5})
    out = tmp_path / "llava"
    res = run_grounding_finetune(*gargs(demo_bench, out, model="llava_med", max_steps=2,
                                        vlm_lora_modules="language_model,projector,vision_tower"))
    assert res["selected_step"] == 2
    assert any("vision_tower" in t for t in res["lora_targets"])
    # LLaVA reads CLIP layer -2: the LoRA of the last CLIP layer gets no gradient and is frozen (not trained)
    assert res["frozen_unused"] and all("encoder.layers.1." in n for n in res["frozen_unused"])
    tuned = dict(load_finetuned_vlm(str(out)).model.named_parameters())
    fresh = dict(create_vlm("llava_med", size="tiny").model.named_parameters())
    changed = {k for k in fresh if not torch.equal(tuned[k], fresh[k])}
    assert "model.vision_tower.encoder.layers.0.self_attn.q_proj.weight" in changed
    assert "model.multi_modal_projector.linear_1.weight" in changed
    assert "model.multi_modal_projector.linear_1.bias" in changed  # projector trained fully
    assert not any("encoder.layers.1." in k for k in changed if "vision_tower" in k)
    assert any("language_model" in k for k in changed)


def test_resume_after_kill_reproduces_the_uninterrupted_run(demo_bench, tmp_path, repo_root):
    steps = 6
    common = dict(max_steps=steps, eval_steps=3, save_steps=1)
    ref = tmp_path / "ref"
    run_grounding_finetune(*gargs(demo_bench, ref, **common))
    out = tmp_path / "killed"
    a, v = gargs(demo_bench, out, **common)
    cmd = [sys.executable, os.path.join(repo_root, "finetune.py"), *cli(a, v)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=repo_root,
                            env=_env(repo_root))
    last = out / ".medfm" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=False)["step"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (out / "finetune_config.json").exists(), "the kill came too late to test resume"
    killed_at = torch.load(last, weights_only=False)["step"]
    assert 0 < killed_at < steps
    res = run_grounding_finetune(a, v)
    assert res["resumed"] is True and res["steps"] == steps
    ref_log, log = json.load(open(ref / "training_log.json")), json.load(open(out / "training_log.json"))
    assert [s["step"] for s in log["steps"]] == list(range(1, steps + 1))
    for x, y in zip(ref_log["steps"], log["steps"], strict=True):
        assert abs(x["loss"] - y["loss"]) <= 1e-6 * max(1.0, abs(x["loss"])), (x, y)
    assert [(x["step"], x["mean_iou"]) for x in ref_log["validation"]] == \
        [(y["step"], y["mean_iou"]) for y in log["validation"]]
    w_ref = torch.load(ref / ".medfm" / "last.pt", weights_only=False)["trainable"]
    w = torch.load(last, weights_only=False)["trainable"]
    assert w_ref.keys() == w.keys() and all(torch.allclose(w_ref[k], w[k], atol=1e-7) for k in w)
    seen = [json.loads(line) for line in open(out / ".medfm" / "seen_rank0.jsonl")]
    assert [s["step"] for s in seen] == list(range(1, steps + 1))


def test_accumulation_and_checkpointing_take_the_same_step(demo_bench, tmp_path):
    """Also with --perturbation_augment: a sample's perturbation is a function of (seed, epoch, index), so the
    same samples are perturbed the same way whatever the micro-batch layout."""
    aug = dict(perturbation_augment="translate", perturbation_levels="2", perturbation_prob=0.5)
    one = tmp_path / "b4"
    run_grounding_finetune(*gargs(demo_bench, one, max_steps=2, eval_steps=2, **aug))
    two = tmp_path / "b2x2"
    res = run_grounding_finetune(*gargs(demo_bench, two, max_steps=2, eval_steps=2, batch_size=2,
                                        gradient_accumulation_steps=2, gradient_checkpointing=True, **aug))
    assert res["global_batch"] == 4
    plain = tmp_path / "plain"
    run_grounding_finetune(*gargs(demo_bench, plain, max_steps=2, eval_steps=2))
    l0 = json.load(open(plain / "training_log.json"))["steps"]
    la = json.load(open(one / "training_log.json"))["steps"]
    assert [s["loss"] for s in l0] != [s["loss"] for s in la]  # the augmentation changed what was trained on
    l1, l2 = json.load(open(one / "training_log.json")), json.load(open(two / "training_log.json"))
    for x, y in zip(l1["steps"], l2["steps"], strict=True):
        assert x["answer_tokens"] == y["answer_tokens"]
        assert abs(x["loss"] - y["loss"]) <= LOSS_RTOL * x["loss"], (x, y)
    w1 = torch.load(one / ".medfm" / "last.pt", weights_only=False)["trainable"]
    w2 = torch.load(two / ".medfm" / "last.pt", weights_only=False)["trainable"]
    assert all(torch.allclose(w1[k], w2[k], atol=WEIGHT_ATOL) for k in w1)
    assert any(w1[k].abs().sum() > 0 for k in w1 if "lora_B" in k)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(demo_bench, tmp_path, repo_root):
    common = dict(model="llava_med", max_steps=2, eval_steps=1)
    one = tmp_path / "one"
    res1 = run_grounding_finetune(*gargs(demo_bench, one, batch_size=4, **common))
    two = tmp_path / "two"
    a, v = gargs(demo_bench, two, batch_size=2, **common)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           os.path.join(repo_root, "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", str(_free_port()),
           os.path.join(repo_root, "finetune.py"), *cli(a, v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=repo_root, env=_env(repo_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res2 = json.load(open(two / "finetune_config.json"))
    assert res2["processes"] == 2 and res2["global_batch"] == res1["global_batch"] == 4
    seen1 = {r["step"]: r["image_ids"] for r in map(json.loads, open(one / ".medfm" / "seen_rank0.jsonl"))}
    r0 = {r["step"]: r["image_ids"] for r in map(json.loads, open(two / ".medfm" / "seen_rank0.jsonl"))}
    r1 = {r["step"]: r["image_ids"] for r in map(json.loads, open(two / ".medfm" / "seen_rank1.jsonl"))}
    for step, ids in seen1.items():
        assert not set(r0[step]) & set(r1[step]) and sorted(r0[step] + r1[step]) == sorted(ids)
    l1, l2 = json.load(open(one / "training_log.json")), json.load(open(two / "training_log.json"))
    for x, y in zip(l1["steps"], l2["steps"], strict=True):
        assert x["answer_tokens"] == y["answer_tokens"]
        assert abs(x["loss"] - y["loss"]) <= LOSS_RTOL * x["loss"], (x, y)
    for x, y in zip(l1["validation"], l2["validation"], strict=True):
        assert y["n"] == x["n"] == 4 and abs(x["mean_iou"] - y["mean_iou"]) <= 1e-6
    w1 = torch.load(one / ".medfm" / "last.pt", weights_only=False)["trainable"]
    w2 = torch.load(two / ".medfm" / "last.pt", weights_only=False)["trainable"]
    assert w1.keys() == w2.keys() and all(torch.allclose(w1[k], w2[k], atol=WEIGHT_ATOL) for k in w1)
    assert any(w1[k].abs().sum() > 0 for k in w1 if "lora_B" in k)  # the weights moved


def test_bad_arguments_fail_before_training(demo_bench, tmp_path):
    with pytest.raises(FinetuneError, match="float16 gives empty output"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "a", mixed_precision="fp16"))
    with pytest.raises(FinetuneError, match="float16"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "b", vlm_dtype="float16"))
    with pytest.raises(FinetuneError, match="--loss applies to segmentation only"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "c", loss="focal_dice"))
    with pytest.raises(FinetuneError, match="--strategy lora only"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "d", strategy="full"))
    with pytest.raises(FinetuneError, match="must be one of medgemma"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "e", model="medsam"))
    with pytest.raises(FinetuneError, match="unknown 'decoder'"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "f", vlm_lora_modules="language_model,decoder"))
    with pytest.raises(FinetuneError, match="projector alone is not LoRA"):
        run_grounding_finetune(*gargs(demo_bench, tmp_path / "g", vlm_lora_modules="projector"))
    assert not any((tmp_path / n).exists() for n in "abcdefg")


@pytest.fixture()
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state; a bf16 run needs a fresh one (and leaves a fresh one)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_run_loads_and_refuses_other_base_weights(demo_bench, tmp_path, fresh_accelerate_state):
    out = tmp_path / "bf16"
    res = run_grounding_finetune(*gargs(demo_bench, out, max_steps=1, eval_steps=1, mixed_precision="bf16",
                                        vlm_dtype="bfloat16"))
    assert res["steps"] == 1
    cfg = json.load(open(out / "finetune_config.json"))
    assert cfg["base_model_type"] == "gemma3" and cfg["base_fingerprint"].startswith("sha256:")
    assert cfg["base_model_id"] == "medgemma:tiny-random@seed=0"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(out / "adapter"))
    tuned = load_finetuned_vlm(str(out))
    assert tuned.dtype == torch.bfloat16
    bad = tmp_path / "other"
    shutil.copytree(out, bad)
    cfg["model_kwargs"] = {"size": "tiny", "seed": 1}
    (bad / "finetune_config.json").write_text(json.dumps(cfg))
    with pytest.raises(FinetunedLoadError, match="not those"):
        load_finetuned_vlm(str(bad))


def test_evaluator_loads_the_finetune_and_the_comparison_joins_both_runs(demo_bench, tmp_path, monkeypatch):
    """``evaluate.py --task grounding --finetuned DIR`` (through the one evaluator) and the one-command
    zero-shot vs fine-tuned table on clean and a geometric perturbation."""
    from medfm_hf.benchmark.build import run_shard
    from medfm_hf.finetune.vlm_compare import compare_grounding, format_comparison

    bench = tmp_path / "bench"
    shutil.copytree(demo_bench, bench)
    run_shard(str(bench), "demo", "translate", [2], 0)
    _scripted(monkeypatch, {0: 0.0, 1: 0.5})  # select the trained step, so the adapter is not a no-op
    out = tmp_path / "run"
    assert run_grounding_finetune(*gargs(str(bench), out, max_steps=1, eval_steps=1))["selected_step"] == 1
    table = compare_grounding(str(out), str(bench), str(tmp_path / "cmp"), allow_incomplete=True, limit=3,
                              batch_size=3)
    assert [(r["kind"], r["name"], r["level"]) for r in table.to_dict("records")] == \
        [("clean", "clean", 0), ("perturbation", "translate", 2)]
    for m in ("zero_shot", "finetuned"):
        pert = table.iloc[1]
        assert pert[f"{m}_n"] == 3
        assert abs(pert[f"{m}_acc@0.5_drop"] - (table.iloc[0][f"{m}_acc@0.5"] - pert[f"{m}_acc@0.5"])) < 1e-12
    runs = {m: json.load(open(tmp_path / "cmp" / m / "run.json")) for m in ("zero_shot", "finetuned")}
    assert runs["zero_shot"]["model"]["model_id"] == "medgemma:tiny-random@seed=0"
    assert runs["finetuned"]["model"]["model_id"].startswith("medgemma:tiny-random@seed=0+lora:")
    assert runs["finetuned"]["arguments"]["finetuned"] == str(out)
    md = format_comparison(table)
    assert md.count("\n") == 3 and "| translate | 2 | 3 |" in md


def test_cli_and_script_take_the_task_dimension(capsys, repo_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune_script", os.path.join(repo_root, "finetune.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script_main = script.main
    from medfm_hf.cli import main as cli_main

    common = ["--model", "llava_med", "--model_kwargs", '{"size": "tiny"}', "--strategy", "lora", "--dry_run"]
    assert cli_main(["finetune", "--task", "grounding", *common, "--vlm_lora_modules", "language_model,projector"]) == 0
    out = capsys.readouterr().out
    assert "LoRA r=8 alpha=16.0 on 14 modules (language_model, projector)" in out and "multi_modal_projector" in out
    assert script_main(["--task", "grounding", *common]) == 0
    assert "on 14 modules (language_model)" in capsys.readouterr().out
    assert script_main(["--task", "detection", *common]) == 2
    assert "--task must be segmentation or grounding" in capsys.readouterr().err


def test_hf_family_trains_in_its_declared_convention(demo_bench, tmp_path):
    out = tmp_path / "hf"
    res = run_grounding_finetune(*gargs(demo_bench, out, model="hf", max_steps=1, eval_steps=1,
                                        model_kwargs='{"size": "tiny", "box_format": "xyxy_1000"}',
                                        lora_rank=4, lora_alpha=8.0, lora_dropout=0.1))
    peft_cfg = json.load(open(out / "adapter" / "adapter_config.json"))
    assert (peft_cfg["r"], peft_cfg["lora_alpha"], peft_cfg["lora_dropout"]) == (4, 8.0, 0.1)
    assert peft_cfg["target_modules"] == LM_PATTERN and res["lora"]["r"] == 4
    assert res["box_convention"]["box_format"] == "xyxy_1000"
    ans = res["example"]["answer"]
    assert ans.startswith("[") and all(0 <= int(v) <= 1000 for v in ans.strip("[]").split(","))
    assert res["example"]["prompt"].endswith("Answer with the bounding box in xyxy_1000 format.")
    assert load_finetuned_vlm(str(out)).box_convention.box_format == "xyxy_1000"
