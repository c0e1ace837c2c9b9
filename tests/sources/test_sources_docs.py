"""The Python examples in ``docs/sources.md`` run as written, and every adapter is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medfm_hf.sources import list_sources

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_doc_has_examples():
    assert len(BLOCKS) == 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code, capsys):
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out.strip()


def test_every_registered_source_has_a_section():
    text = DOC.read_text(encoding="utf-8")
    for spec in list_sources():
        assert f"| `{spec.name}` |" in text, spec.name
