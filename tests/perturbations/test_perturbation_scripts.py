"""Smoke tests of scripts/make_gallery.py and benchmarks/perturbation_bench.py (tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _load(rel: str):
    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gallery_writes_strips_and_page(tmp_path, capsys):
    gallery = _load("scripts/make_gallery.py")
    assert gallery.main(["--names", "rotate,saturation", "--out", str(tmp_path), "--seed", "2"]) == 0
    for name in ("rotate", "saturation"):
        with Image.open(tmp_path / "perturbations" / f"{name}.png") as im:
            assert im.width == 6 * (gallery.TILE + 4) - 4  # clean + 5 levels
    page = (tmp_path / "perturbations.md").read_text()
    assert "![rotate at levels 1-5" in page and "| [saturation](#saturation) |" in page
    assert "L5" in page
    assert "wrote 2 strips" in capsys.readouterr().out
    # the page's Python example runs as written
    blocks = [b.split("```", 1)[0] for b in page.split("```python\n")[1:]]
    assert blocks
    for code in blocks:
        exec(compile(code, "perturbations.md", "exec"), {})


def test_module_doctests():
    import doctest

    import medfm_hf.calibration
    import medfm_hf.ssim

    for mod in (medfm_hf.ssim, medfm_hf.calibration):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__


def test_full_gallery_run_removes_stale_strips(tmp_path, monkeypatch):
    from medfm_hf.reporting import gallery

    monkeypatch.setattr(gallery, "list_perturbations", lambda: ["contrast"])
    pics = tmp_path / "perturbations"
    pics.mkdir()
    (pics / "renamed_old.png").write_bytes(b"x")
    assert gallery.main(["--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in pics.iterdir())
    assert "renamed_old.png" not in names and "contrast.png" in names
    assert "fov_all.png" in names and "fov_ultrasound.png" in names  # the FOV overlays are kept
    page = (tmp_path / "perturbations.md").read_text()
    assert "perturbations/fov_all.png" in page


def test_gallery_picks_a_fitting_modality():
    gallery = _load("scripts/make_gallery.py")
    from medfm_hf.perturbations import get_perturbation, list_perturbations
    from medfm_hf.sources.demo import load_demo

    records = load_demo(split="test")
    for i, name in enumerate(list_perturbations()):
        rec = gallery.pick_record(name, records, i)
        assert get_perturbation(name).applies_to(rec.modality, rec.image)


def test_benchmark_prints_tables(capsys):
    bench = _load("benchmarks/perturbation_bench.py")
    assert bench.main(["--perturbations", "contrast,translate", "--sizes", "64", "--per-modality", "1",
                       "--naive-per-modality", "1"]) == 0
    out = capsys.readouterr().out
    assert "## 64 x 64 px" in out
    assert "| contrast | base |" in out and "| translate | base |" in out
    assert "naive bisection" in out and "x slower" in out
    assert "| 64 | RGB |" in out  # SSIM speed table


def test_benchmark_options(capsys):
    bench = _load("benchmarks/perturbation_bench.py")
    assert bench.main(["--perturbations", "jpeg", "--sizes", "32", "--per-modality", "1", "--no-naive",
                       "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "naive bisection" not in out
    assert "| 10 | 10 | 50 |" in out  # 10 images (one per modality), 10 pairs, 50 cells
    with pytest.raises(Exception, match="unknown perturbation"):
        bench.main(["--perturbations", "nope", "--sizes", "32"])
