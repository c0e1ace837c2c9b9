"""The build scales out with ``accelerate launch``: two CPU ranks give byte-identical output to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from medfm_hf.cli import main

from .conftest import free_port, tree_hashes, write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_accelerate_ranks_match_one_process(tmp_path):
    src = write_folder(tmp_path / "src", n=4)
    args = ["build", "--sources", f"folder={src}:ultrasound:fractions=0/0/1", "--perturbations",
            "gaussian_noise,contrast,brightness,gaussian_blur", "--levels", "1,3", "--max-size", "64", "--no-progress"]
    one = tmp_path / "one"
    assert main([*args, "--out", str(one)]) == 0
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", free_port(),
           "-m", "medfm_hf.cli", *args, "--out", str(two)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("clean records") == 1  # rank 0 reports, once
    hashes = tree_hashes(two)
    assert hashes == tree_hashes(one) and any(k.startswith("data/brightness_l3") for k in hashes)
    ranks = {json.loads(p.read_text())["rank"] for p in (two / ".medfm" / "shards").glob("*.json")}
    assert ranks == {0, 1}  # the shards were dealt to both ranks
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert m1["data_fingerprint"] == m2["data_fingerprint"]
    assert main(["verify", str(two)]) == 0
