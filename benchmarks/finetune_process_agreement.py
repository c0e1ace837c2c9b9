"""1 process vs 2 processes (DDP over gloo on CPU): the same seed and global batch give the same curve.

    python benchmarks/finetune_process_agreement.py                       # tiny SamModel MedSAM, 6 steps
    python benchmarks/finetune_process_agreement.py --model medsam_lite --model-kwargs '{}' --steps 3

Builds a small clean benchmark from the embedded demo set (12 train, 4 validation images), fine-tunes once
in one process (batch 4) and once under ``accelerate launch`` with ``accelerate_configs/cpu_2proc.yaml``
(batch 2 per process), then prints per-step losses, the validation curve of both runs and the largest
differences, against the tolerances the test suite states (tests/finetune/test_distributed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS_RTOL, VAL_ATOL = 1e-4, 1e-3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="medsam")
    ap.add_argument("--model-kwargs", default='{"size": "tiny", "image_size": 64}')
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--strategy", default="decoder_prompt")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-3)
    a = ap.parse_args()
    sys.path.insert(0, ROOT)
    from medfm_hf.dataset_io import write_clean_config
    from medfm_hf.sources.demo import load_demo

    work = tempfile.mkdtemp(prefix="medfm_ft_agree_")
    bench = os.path.join(work, "bench")
    write_clean_config(load_demo("train")[::5] + load_demo("validation")[::5], bench)
    common = ["finetune.py", "--model", a.model, "--model_kwargs", a.model_kwargs, "--dataset", bench,
              "--strategy", a.strategy, "--image_size", str(a.image_size), "--max_steps", str(a.steps),
              "--eval_steps", "1", "--learning_rate", str(a.lr), "--box_jitter", "0.0", "--encoder_blocks", "1",
              "--no_progress"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = {
        "1 process, batch 4": [sys.executable, *common, "--output", os.path.join(work, "one"), "--batch_size", "4"],
        "2 processes, batch 2 each": [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                                      os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"),
                                      "--main_process_port", str(port), *common,
                                      "--output", os.path.join(work, "two"), "--batch_size", "2"],
    }
    for name, cmd in runs.items():
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if res.returncode:
            print(f"{name}: failed\n{res.stderr[-3000:]}")
            return 1
    one = json.load(open(os.path.join(work, "one", "training_log.json")))
    two = json.load(open(os.path.join(work, "two", "training_log.json")))
    print(f"{a.model} ({a.strategy}), {a.steps} steps, global batch 4, seed 0")
    print(f"{'step':>4} {'loss 1p':>10} {'loss 2p':>10} {'rel diff':>9}")
    rel = []
    for x, y in zip(one["steps"], two["steps"]):
        rel.append(abs(x["loss"] - y["loss"]) / abs(x["loss"]))
        print(f"{x['step']:>4} {x['loss']:>10.6f} {y['loss']:>10.6f} {rel[-1]:>9.2e}")
    print(f"{'step':>4} {'val IoU 1p':>11} {'val IoU 2p':>11} {'|dIoU|':>9} {'|dDice|':>9}")
    div, ddice = [], []
    for x, y in zip(one["validation"], two["validation"]):
        div.append(abs(x["iou"] - y["iou"]))
        ddice.append(abs(x["dice"] - y["dice"]))
        print(f"{x['step']:>4} {x['iou']:>11.6f} {y['iou']:>11.6f} {div[-1]:>9.2e} {ddice[-1]:>9.2e}")
    ok = max(rel) <= LOSS_RTOL and max(div + ddice) <= VAL_ATOL
    print(f"max relative loss difference {max(rel):.2e} (tolerance {LOSS_RTOL:g}); max validation IoU/Dice "
          f"difference {max(div + ddice):.2e} (tolerance {VAL_ATOL:g}): {'within' if ok else 'OUTSIDE'} tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
