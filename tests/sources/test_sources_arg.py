"""``--sources`` parsing: paths, the folder modality and per-source ``:key=value`` options."""

from __future__ import annotations

import pytest

from medfm_hf.sources import parse_sources_arg
from medfm_hf.sources._common import parse_fractions
from medfm_hf.sources.pannuke import parse_folds


def test_parse_sources_arg_paths_modality_and_options():
    got = parse_sources_arg("demo, folder=/d/x:dermoscopy ,busi=/data/BUSI,ct_nifti=/m/Task03:label=2:window=liver,"
                            "folder=/y:mask_suffix=_seg:ct,roco=C:\\data\\roco:modality=xray")
    assert got == [
        ("demo", None, {}),
        ("folder", "/d/x", {"modality": "dermoscopy"}),
        ("busi", "/data/BUSI", {}),
        ("ct_nifti", "/m/Task03", {"label": "2", "window": "liver"}),
        ("folder", "/y", {"mask_suffix": "_seg", "modality": "ct"}),
        ("roco", "C:\\data\\roco", {"modality": "xray"}),
    ]
    with pytest.raises(ValueError, match="no sources"):
        parse_sources_arg(" , ")


def test_option_values_without_commas():
    ((_, _, opts),) = parse_sources_arg("pannuke=/p:folds=1=test/2=train/3=validation:fractions=0.8/0.1/0.1")
    assert parse_folds(opts["folds"]) == {1: "test", 2: "train", 3: "validation"}
    assert parse_fractions(opts["fractions"]) == (0.8, 0.1, 0.1)
    assert parse_folds("1:train,2:validation,3:test") == {1: "train", 2: "validation", 3: "test"}
    with pytest.raises(ValueError, match="must look like"):
        parse_folds("1train")
