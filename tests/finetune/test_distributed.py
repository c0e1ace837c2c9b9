"""Two CPU processes (DDP over gloo) against one: same samples per step, each rank its own shard, same curve.

Tolerance: the two runs differ only in float summation order (DDP averages the two ranks' gradients of
2-image mean losses; one process takes the gradient of the 4-image mean loss), so per-step losses agree to
a relative 1e-4 and validation IoU/Dice to an absolute 1e-3 (a few pixels of the 4 validation masks).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from medfm_hf.finetune.trainer import run_finetune

LOSS_RTOL = 1e-4
VAL_ATOL = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seen(out, rank: int) -> dict[int, list[str]]:
    path = os.path.join(out, ".medfm", f"seen_rank{rank}.jsonl")
    return {r["step"]: r["image_ids"] for r in map(json.loads, open(path))}


def test_two_processes_match_one_for_the_same_global_batch(demo_bench, make_args, tmp_path, repo_root):
    # decoder_prompt trains parameters that get no gradient from a box prompt (IoU head, point/mask
    # embeddings): under DDP without find_unused_parameters this only works because they are frozen
    common = dict(strategy="decoder_prompt", max_steps=3, eval_steps=1, learning_rate=3e-3)
    one = tmp_path / "one"
    res1 = run_finetune(make_args(demo_bench, one, batch_size=4, **common))
    assert res1["processes"] == 1 and res1["frozen_unused"]

    two = tmp_path / "two"
    a = make_args(demo_bench, two, batch_size=2, **common)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           os.path.join(repo_root, "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", str(_free_port()),
           os.path.join(repo_root, "finetune.py"), "--model", a.model, "--model_kwargs", a.model_kwargs,
           "--dataset", demo_bench, "--output", str(two), "--strategy", a.strategy, "--image_size", "64",
           "--batch_size", "2", "--max_steps", "3", "--eval_steps", "1", "--learning_rate", str(a.learning_rate),
           "--box_jitter", "0.0", "--encoder_blocks", "1", "--no_progress"]
    env = dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=repo_root, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res2 = json.load(open(two / "finetune_config.json"))
    assert res2["processes"] == 2 and res2["global_batch"] == res1["global_batch"] == 4
    assert res2["frozen_unused"] == res1["frozen_unused"]

    # each rank saw only its own shard; together they saw exactly the one-process batch of every step
    single, r0, r1 = _seen(one, 0), _seen(two, 0), _seen(two, 1)
    assert sorted(single) == sorted(r0) == sorted(r1) == [1, 2, 3]
    for step in single:
        assert len(r0[step]) == len(r1[step]) == 2
        assert not set(r0[step]) & set(r1[step])
        assert sorted(r0[step] + r1[step]) == sorted(single[step])

    log1 = json.load(open(one / "training_log.json"))
    log2 = json.load(open(two / "training_log.json"))
    for x, y in zip(log1["steps"], log2["steps"], strict=True):
        assert abs(x["loss"] - y["loss"]) <= LOSS_RTOL * abs(x["loss"]), (x, y)
    assert [v["step"] for v in log1["validation"]] == [v["step"] for v in log2["validation"]] == [0, 1, 2, 3]
    for x, y in zip(log1["validation"], log2["validation"], strict=True):
        assert y["n"] == x["n"] == 4  # the validation shards were gathered without duplicates
        assert abs(x["iou"] - y["iou"]) <= VAL_ATOL and abs(x["dice"] - y["dice"]) <= VAL_ATOL, (x, y)
    # the validation curve moved: the comparison is not between two untrained models
    assert len({round(v["iou"], 6) for v in log1["validation"]}) > 1


def test_unused_parameter_choice_reaches_ddp(make_args, tmp_path):
    from medfm_hf.finetune.trainer import make_accelerator

    find = make_accelerator(make_args("", tmp_path, unused_parameters="find"))
    assert find.ddp_handler is not None and find.ddp_handler.find_unused_parameters is True
    freeze = make_accelerator(make_args("", tmp_path))
    assert freeze.ddp_handler is not None and freeze.ddp_handler.find_unused_parameters is False
