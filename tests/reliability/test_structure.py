"""The code's structure: one layout module, one atomic writer, no import cycle, no library -> CLI import,
a typed plan, a device-agnostic PGD generator (architecture review)."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medfm_hf.benchmark.layout import parse_levels

PKG = Path(__file__).resolve().parents[2] / "medfm_hf"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Every medfm_hf module ``path`` imports (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for n in names:
            while n and n not in mods:
                n = n.rpartition(".")[0]
            if n.startswith("medfm_hf.") and n in mods:
                found.add(n)
    return found


def test_no_import_cycle_between_modules():
    mods = _modules()
    graph = {m: {t for t in _imports(p, mods) if t != m and not m.startswith(t + ".")} for m, p in mods.items()}
    # packages are only containers here: an import of a package's submodule is not an import of its __init__
    graph = {m: {t for t in ts if not mods[t].name == "__init__.py" or t == "medfm_hf"} for m, ts in graph.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_library_module_imports_a_cli_command():
    mods = _modules()
    offenders = [m for m, p in mods.items()
                 if not m.startswith(("medfm_hf.commands", "medfm_hf.cli"))
                 and any(t.startswith("medfm_hf.commands") or t == "medfm_hf.cli" for t in _imports(p, mods))]
    assert offenders == []


def test_one_atomic_writer():
    users = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "os.replace(" in p.read_text())
    assert users == ["io.py"]


def test_layout_names_are_built_in_one_module():
    offenders = []
    for p in PKG.rglob("*.py"):
        text = p.read_text()
        if p.name == "layout.py":
            continue
        if '"_l"' in text or "_l{" in text or "-00000-of-" in text or 'rpartition("_l")' in text:
            offenders.append(str(p.relative_to(PKG)))
    assert offenders == []


@pytest.mark.parametrize("text", ["abc", "-1", "1.5", "", "5-1", "0", "6", "1-9"])
def test_levels_parse_in_one_place_with_one_line_errors(text):
    with pytest.raises(ValueError, match="levels must be within 1-5"):
        parse_levels(text)
    assert parse_levels("1-3,5") == [1, 2, 3, 5]


def test_the_plan_is_typed_and_frozen(tmp_path):
    from medfm_hf.evaluation.args import EvalArguments
    from medfm_hf.evaluation.plan import EvalPlan
    from medfm_hf.evaluation.runner import plan_run

    from .conftest import build, write_folder

    src = write_folder(tmp_path / "src", n=3)
    build(src, tmp_path / "b", perts=["contrast"], levels=[1, 2])
    plan, _ = plan_run(EvalArguments(model="grabcut", dataset=str(tmp_path / "b"), output=str(tmp_path / "r"),
                                     levels="1-2", batch_size=2))
    assert isinstance(plan, EvalPlan) and plan.task == "segmentation"
    assert plan.levels == (1, 2) and plan.configs == ("contrast_l1", "contrast_l2") and plan.attacks == ()
    assert [b.items[0].kind for b in plan.batches] == ["clean", "clean", "perturbation", "perturbation",
                                                       "perturbation", "perturbation"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.levels = (3,)
    assert not (tmp_path / "r").exists()  # planning writes nothing


def test_pgd_generator_is_cpu_whatever_the_model_device(monkeypatch):
    """The attack generator stays on the CPU (pgd draws there) even when the model runs on another device."""
    import medfm_hf.evaluation.segmentation as seg
    from medfm_hf.benchmark.reader import Row
    from medfm_hf.evaluation.plan import Batch, EvalPlan, WorkItem

    seen = {}

    def fake_attack(model, images, boxes, masks, method, level, *, step_rule, generator):
        seen["generator"] = generator.device.type
        seen["images"] = images.device.type
        torch.rand(2, generator=generator, device="cpu")  # the draw pgd makes: refused for a CUDA generator
        return images

    class Model:
        differentiable = True

        def predict(self, images, boxes):
            return torch.full((images.shape[0], 16, 16), 0.9)

    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True

    class Reader:
        def row(self, config, index):
            return Row("x/0", "x", "ct", np.full((16, 16), 7, np.uint8), mask, [4, 4, 10, 10])

    monkeypatch.setattr("medfm_hf.attacks.attack", fake_attack)
    plan = EvalPlan(task="segmentation", model="m", checkpoint=None, model_kwargs={}, dataset="d", dataset_path="d",
                    configs=(), levels=(1,), attacks=("pgd",), step_rule="standard", seed=0, batch_size=1,
                    limit=None, output="o", fingerprints={"dataset": "x", "checkpoint": "none"})
    batch = Batch("attack-pgd-l1", (WorkItem("attack", "pgd", 1, "clean", 0, "x/0"),))
    import contextlib

    df = seg.run_batch(Model(), Reader(), batch, plan, torch.device("meta"), contextlib.nullcontext)
    assert seen == {"generator": "cpu", "images": "meta"}
    assert df["iou"].iloc[0] == pytest.approx(36 / 256)  # the full-image prediction against a 6x6 mask
    assert seg.attack_generator(0, "k").device.type == "cpu"
    assert torch.equal(torch.rand(3, generator=seg.attack_generator(5, "k")),
                       torch.rand(3, generator=seg.attack_generator(5, "k")))


def test_evaluator_reads_through_the_benchmark_reader():
    text = (PKG / "evaluation" / "segmentation.py").read_text() + (PKG / "evaluation" / "runner.py").read_text()
    assert "pq.read_table" not in text and "glob.glob(os.path.join(plan" not in text
    assert not (PKG / "evaluation" / "data.py").read_text().count("read_table")
    assert os.path.exists(PKG / "benchmark" / "reader.py") and os.path.exists(PKG / "benchmark" / "layout.py")
