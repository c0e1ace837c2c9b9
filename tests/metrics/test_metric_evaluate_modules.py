"""The ``evaluate`` modules in ``metrics/``: offline loading, card examples, add_batch, 2 processes."""

from __future__ import annotations

import doctest
import importlib.util
import json
import multiprocessing
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest

import medfm_hf.metrics as M

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["iou", "dice", "grounding_accuracy", "bleu", "cider", "vqa_accuracy", "robustness_drop"]

evaluate = pytest.importorskip("evaluate")


def _inputs(name: str) -> dict:
    """Eight samples of inputs for each module (deterministic)."""
    rng = np.random.default_rng(8)
    if name in ("iou", "dice"):
        refs = [rng.random((12, 10)) < 0.3 for _ in range(8)]
        preds = [np.clip(r * 0.7 + rng.normal(0, 0.3, r.shape), 0, 1).astype(np.float32) for r in refs]
        refs[3][:] = False
        preds[3][:] = 0.0  # both empty
        return {"predictions": preds, "references": refs}
    if name == "grounding_accuracy":
        texts = ['{"box_2d": [125, 250, 500, 750]}', "[0.25, 0.125, 0.75, 0.5]", "[64, 32, 128, 128]", "no box",
                 "<box>(250,125),(750,500)</box>", "[60, 30, 190, 120]", "[0, 0, 10, 10]", "x_min=64, y_min=32, x_max=192, y_max=128"]  # fmt: skip
        return {"predictions": texts, "references": [[64, 32, 192, 128]] * 8, "image_sizes": [[256, 256]] * 8}
    if name in ("bleu", "cider"):
        preds = ["a small nodule in the left lung", "normal chest x-ray", "fracture of the left femur",
                 "liver lesion", "no acute findings", "large pleural effusion on the right", "brain mri", ""]  # fmt: skip
        refs = [["small nodule in the left lung", "left lung nodule"], ["normal chest radiograph"],
                ["a femoral fracture"], ["hypodense liver lesion"], ["no acute findings"],
                ["right pleural effusion", "a large right-sided effusion"], ["t2 mri of the brain"], ["ct of the head"]]  # fmt: skip
        return {"predictions": preds, "references": refs}
    if name == "vqa_accuracy":
        opts = ["Pneumonia", "Pneumothorax", "Effusion"]
        return {
            "predictions": ["B", "The answer is (C).", "pneumonia", "", "Yes.", "left lung", "A. Pneumonia", "D"],
            "references": ["B", "A", "A", "B", "yes", "right lung", "A", "C"],
            "options": [opts, opts, opts, opts, [], [], opts, opts],
        }
    return {
        "predictions": list(rng.random(8)),
        "references": list(rng.random(8)),
        "levels": [1, 2, 3, 4, 5, 1, 3, 5],
    }


def _direct(name: str, kwargs: dict) -> dict:
    p, r = kwargs["predictions"], kwargs["references"]
    if name in ("iou", "dice"):
        return M.segmentation_scores(p, r, metric=name)
    if name == "grounding_accuracy":
        return M.grounding_scores(p, r, kwargs["image_sizes"])
    if name == "bleu":
        return M.bleu_scores(p, r, tokenizer="python")
    if name == "cider":
        return M.cider_scores(p, r, tokenizer="python")
    if name == "vqa_accuracy":
        return M.vqa_scores(p, r, kwargs["options"])
    return M.robustness_drop(p, r, kwargs["levels"])


def _extra(name: str) -> dict:
    return {"tokenizer": "python"} if name in ("bleu", "cider") else {}


@pytest.fixture
def no_network(monkeypatch):
    """HF_HUB_OFFLINE=1 (conftest) and any socket connection fails loudly."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.parametrize("name", NAMES)
def test_load_relative_and_absolute_add_batch_equals_direct(name, monkeypatch, no_network):
    monkeypatch.chdir(ROOT)
    rel = evaluate.load(f"metrics/{name}")
    absolute = evaluate.load(str(ROOT / "metrics" / name))
    assert rel.name == absolute.name
    kwargs = _inputs(name)
    direct = _direct(name, kwargs)
    whole = rel.compute(**kwargs, **_extra(name))
    for lo, hi in ((0, 3), (3, 8)):
        absolute.add_batch(**{k: v[lo:hi] for k, v in kwargs.items()})
    batched = absolute.compute(**_extra(name))
    assert json.dumps(whole, sort_keys=True) == json.dumps(direct, sort_keys=True)
    assert json.dumps(batched, sort_keys=True) == json.dumps(direct, sort_keys=True)


def _card_example(name: str) -> str:
    spec = importlib.util.spec_from_file_location(f"_card_{name}", ROOT / "metrics" / name / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._KWARGS_DESCRIPTION


@pytest.mark.parametrize("name", NAMES)
def test_module_example_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = _card_example(name)
    test = doctest.DocTestParser().get_doctest(text, {}, name, None, 0)
    assert len(test.examples) >= 3
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"the example of metrics/{name} fails (see the captured output)"


@pytest.mark.parametrize("name", NAMES)
def test_card_has_the_sections_and_its_example_runs(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    card = (ROOT / "metrics" / name / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    for section in ("## Metric description", "## How to use", "## Edge cases", "## Limitations", "## Citation"):
        assert section in card, f"metrics/{name}/README.md lacks {section!r}"
    blocks = re.findall(r"^```python\n(.*?)^```$", card, flags=re.S | re.M)
    assert blocks, f"metrics/{name}/README.md has no python example"
    test = doctest.DocTestParser().get_doctest(blocks[0], {}, f"{name}/README.md", None, 0)
    assert len(test.examples) >= 3
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"the example in metrics/{name}/README.md fails (see the captured output)"
    # the card shows the module's own example
    assert _card_example(name).split("Examples:")[1].split(">>>")[1].strip() in blocks[0]


def _shard_worker(modules: dict, rank: int, out: str) -> None:
    """One of the two "processes": add this rank's (uneven) shard and compute; rank 0 writes the result."""
    results = {}
    for name, module in modules.items():
        kwargs = _inputs(name)
        lo, hi = (0, 5) if rank == 0 else (5, 8)
        module.add_batch(**{k: v[lo:hi] for k, v in kwargs.items()})
        results[name] = module.compute(**_extra(name))
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(results, fh, sort_keys=True)
    elif any(v is not None for v in results.values()):
        raise SystemExit(f"process 1 should get None from compute, got {results}")


def test_two_processes_give_the_single_process_result(tmp_path, monkeypatch):
    # evaluate's own distributed mechanism: the same experiment_id and cache_dir, num_process=2, file locks
    # between two OS processes. They are forked after loading (importing evaluate again would cost seconds).
    monkeypatch.chdir(ROOT)
    cache = str(tmp_path / "cache")
    out = str(tmp_path / "rank0.json")
    modules = [
        {
            name: evaluate.load(
                f"metrics/{name}", num_process=2, process_id=rank, experiment_id="medfm-test", cache_dir=cache,
                timeout=60,
            )
            for name in NAMES
        }
        for rank in (0, 1)
    ]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_shard_worker, args=(modules[rank], rank, out)) for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    distributed = json.loads(Path(out).read_text())
    for name in NAMES:
        single = json.loads(json.dumps(_direct(name, _inputs(name)), sort_keys=True))
        assert distributed[name] == single, name
