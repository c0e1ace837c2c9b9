"""The examples in docs/metrics.md and in the docstrings of medfm_hf.metrics run and give what they say."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["boxes", "captioning", "grounding", "robustness", "segmentation", "vqa"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"medfm_hf.metrics.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_docs_metrics_md_examples(monkeypatch):
    monkeypatch.chdir(ROOT)  # evaluate.load("metrics/...") is relative to the repository root
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    assert len(blocks) >= 5
    globs: dict = {}
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for i, block in enumerate(blocks):  # one namespace, in order, as a reader would run them
        test = doctest.DocTestParser().get_doctest(block, globs, f"docs/metrics.md[{i}]", None, 0)
        runner.run(test, clear_globs=False)
        globs = test.globs
    assert runner.failures == 0, "an example in docs/metrics.md fails (see the captured output)"
    assert runner.tries >= 25
