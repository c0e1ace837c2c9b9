"""``build --ct-window``: the HU window of CT images that record none (8-bit sources), stored in the rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medfm_hf.benchmark.build import BuildError, BuildSettings, collect_clean_records, validate_settings
from medfm_hf.perturbations.ct import DEFAULT_WINDOW, ct_window


def _ct_folder(tmp_path, n=4):
    rng = np.random.default_rng(0)
    img, msk = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    img.mkdir(parents=True)
    msk.mkdir(parents=True)
    for i in range(n):
        yy, xx = np.mgrid[:64, :64]
        body = ((yy - 32) ** 2 + (xx - 32) ** 2 < 26**2) * 120 + rng.integers(0, 20, (64, 64))
        Image.fromarray(body.astype(np.uint8)).save(img / f"c{i}.png")
        m = np.zeros((64, 64), np.uint8)
        m[20 + i:30 + i, 24:36] = 255
        Image.fromarray(m).save(msk / f"c{i}.png")
    return tmp_path / "src"


def test_ct_window_reaches_records_without_a_window(tmp_path):
    src = _ct_folder(tmp_path)
    settings = BuildSettings(sources=[["folder", str(src), {"modality": "ct"}]], perturbations=["ct_ring"],
                             ct_window=["-600", "1500"])
    out = str(tmp_path / "out")
    validate_settings(settings, out)
    assert settings.ct_window == [-600.0, 1500.0]
    records, _, _ = collect_clean_records(settings, out)
    assert records and all(ct_window(r.meta) == (-600.0, 1500.0) for r in records)
    assert json.loads(records[0].to_row()["meta"])["window"]["from"] == "--ct-window"
    # without the option the documented default applies
    plain, _, _ = collect_clean_records(BuildSettings(sources=[["folder", str(src), {"modality": "ct"}]]), out)
    assert all(ct_window(r.meta) == DEFAULT_WINDOW for r in plain)


def test_ct_window_is_part_of_the_settings_key_only_when_given():
    assert "ct_window" not in BuildSettings().key()
    assert BuildSettings(ct_window=[40.0, 400.0]).key()["ct_window"] == [40.0, 400.0]


@pytest.mark.parametrize("bad", [["40"], ["40", "0"], ["40", "-5"], ["nan", "400"]])
def test_bad_ct_window_is_one_clear_error(tmp_path, bad):
    with pytest.raises(BuildError, match="--ct-window"):
        validate_settings(BuildSettings(ct_window=bad), str(tmp_path / "out"))
