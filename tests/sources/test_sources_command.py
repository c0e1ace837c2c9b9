"""``medfm-robust sources``: every adapter is listed with its layout, licence and origin."""

from __future__ import annotations

import pytest

from medfm_hf.cli import main
from medfm_hf.sources import list_sources

ADAPTERS = ("folder", "isic2016", "brain_tumor_mri", "busi", "kvasir", "refuge", "pannuke", "ct_nifti",
            "omnimedvqa", "roco", "mecovqa")


def test_every_adapter_is_registered_with_layout_and_licence():
    specs = {s.name: s for s in list_sources()}
    for name in ADAPTERS:
        assert name in specs, name
        assert specs[name].layout and specs[name].licence and specs[name].reference and specs[name].description


def test_sources_lists_all_with_layouts(capsys):
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    for spec in list_sources():
        assert f"\n{spec.name}  [{spec.licence}]" in out
    assert "ISBI2016_ISIC_Part1_{Training,Test}_Data" in out and "kavsir_bboxes.json" in out


@pytest.mark.parametrize("name", ADAPTERS)
def test_sources_name_prints_the_module_documentation(name, capsys):
    assert main(["sources", name]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: ") and "Licence" in out and "layout" in out.lower()


def test_sources_unknown_name_is_a_clear_error(capsys):
    assert main(["sources", "nope"]) == 2
    assert "unknown source 'nope'" in capsys.readouterr().err
