"""``load_demo(per_modality=N)``: the first N records of each modality, as the benchmarks' ``--per-modality``."""

from __future__ import annotations

import pytest

from medfm_hf.sources.demo import load_demo


def test_per_modality_keeps_the_first_records_of_each_modality():
    full = load_demo(split="test")
    two = load_demo(split="test", per_modality=2)
    expected = [r.image_id for r in full if sum(q.modality == r.modality for q in full[:full.index(r) + 1]) <= 2]
    assert [r.image_id for r in two] == expected and len(two) == 20
    assert [r.image_id for r in load_demo(split="test", modalities=["ct"], per_modality=1)] == ["demo/ct_00"]
    with pytest.raises(ValueError, match="per_modality"):
        load_demo(per_modality=0)
