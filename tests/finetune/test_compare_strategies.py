"""compare-strategies on a tiny model: every strategy trained under one budget, evaluated, ranked, plotted."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from medfm_hf.cli import main
from medfm_hf.finetune.compare import parse_strategies

TINY = '{"size": "tiny", "image_size": 64}'


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmpbench") / "medfm-robust"
    assert main(["build", "--sources", "demo", "--out", str(out), "--modalities", "ct,fundus",
                 "--perturbations", "gaussian_noise,ct_metal", "--levels", "2", "--no-progress"]) == 0
    return str(out)


def test_compare_strategies_ranks_every_strategy(small_bench, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare-strategies", "--model", "medsam", "--model-kwargs", TINY, "--dataset", small_bench,
               "--output", str(out), "--strategies", "decoder_only,lora", "--max-steps", "2",
               "--batch-size", "4", "--image-size", "64", "--levels", "2", "--attacks", "fgsm", "--limit", "4",
               "--lr-overrides", "lora=1e-3", "--no-progress"])
    assert rc == 0
    table = pd.read_csv(out / "ranking.csv")
    assert sorted(table["strategy"]) == ["decoder_only", "lora", "none"]
    assert list(table["rank"]) == [1, 2, 3]
    assert table["perturbed_iou"].is_monotonic_decreasing  # ranked by the mean IoU under perturbation
    for col in ("clean_iou", "clean_dice", "iou_drop", "rel_iou_drop", "drop_base", "drop_ct", "drop_fgsm",
                "trainable_params", "train_s", "val_iou"):
        assert col in table and table[col].notna().all(), col
    assert (table.loc[table.strategy == "none", "trainable_params"] == 0).all()
    assert (table.loc[table.strategy != "none", "trainable_params"] > 0).all()
    # one budget: the same steps and batch for every strategy; the LR override applied to LoRA only
    for s in ("decoder_only", "lora"):
        cfg = json.load(open(out / "train" / s / "finetune_config.json"))
        assert cfg["steps"] == 2 and cfg["global_batch"] == 4
        assert cfg["arguments"]["learning_rate"] == (1e-3 if s == "lora" else 1e-4)
        run = json.load(open(out / "eval" / s / "run.json"))
        assert run["arguments"]["finetuned"] == str(out / "train" / s)
    # the same evaluator output for each: same per-sample rows
    rows = {s: pd.read_parquet(out / "eval" / s / "medsam_results.parquet") for s in ("none", "lora")}
    assert len(rows["none"]) == len(rows["lora"]) > 0
    assert os.path.getsize(out / "ranking.png") > 1000
    md = (out / "ranking.md").read_text()
    assert md.startswith("| rank | strategy |") and "lora" in capsys.readouterr().out


def test_strategy_list_is_checked():
    assert parse_strategies("all")[0] == "full"
    with pytest.raises(ValueError, match="unknown strategies"):
        parse_strategies("lora,bitfit")
