"""The benchmark as a Hugging Face dataset: build, card, load, resume (issue: benchmark)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medfm_hf.benchmark import BuildSettings, build_benchmark, list_configs, load_config
from medfm_hf.benchmark.build import BuildError
from medfm_hf.benchmark.features import parse_config_name
from medfm_hf.calibration import BANDS
from medfm_hf.cli import main
from medfm_hf.perturbations import get_perturbation
from medfm_hf.records import decode_png, mask_to_bbox

PERTS = "gaussian_noise,rotate,translate,scale,ct_ring,saturation"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = root / "medfm-robust"
    rc = main(["build", "--sources", "demo", "--out", str(out), "--modalities", "ct,fundus",
               "--perturbations", PERTS, "--num-proc", "2", "--no-progress"])
    assert rc == 0
    return root, out


def test_load_dataset_from_parent_folder(built, monkeypatch):
    from datasets import load_dataset

    root, out = built
    monkeypatch.chdir(root)
    ds = load_dataset("medfm-robust", "ct_ring_l3", split="test")
    assert len(ds) == 6
    assert set(ds["modality"]) == {"ct"} and set(ds["level"]) == {3}
    lo, hi = BANDS[3]
    for s, ok in zip(ds["ssim"], ds["in_band"]):
        assert (lo <= s <= hi) == ok
    assert np.mean(ds["in_band"]) >= 0.8
    clean = load_dataset("medfm-robust", "clean")
    assert set(clean) == {"train", "validation", "test"}
    assert len(clean["test"]) == 12


def test_config_holds_every_applicable_modality(built):
    _, out = built
    ds = load_config(str(out), "gaussian_noise_l2")
    assert sorted(set(ds["modality"])) == ["ct", "fundus"]
    sat = load_config(str(out), "saturation_l1")  # colour only: fundus
    assert set(sat["modality"]) == {"fundus"}
    assert "ct_ring_l1" in list_configs(str(out)) and not any(c.startswith("ct_ring") and "fundus" in c
                                                              for c in list_configs(str(out)))


def test_stored_ssim_is_the_stored_image(built):
    from medfm_hf.ssim import ssim

    _, out = built
    clean = {r["image_id"]: r for r in load_config(str(out), "clean", split="test")}
    for row in load_config(str(out), "gaussian_noise_l4"):
        ref = np.array(clean[row["image_id"]]["image"])
        img = np.array(row["image"])
        assert ssim(ref, img) == pytest.approx(row["ssim"], abs=1e-9)


@pytest.mark.parametrize("name", ["rotate", "translate", "scale"])
def test_geometric_configs_move_mask_and_boxes(built, name):
    _, out = built
    pert = get_perturbation(name)
    clean = {r["image_id"]: r for r in load_config(str(out), "clean", split="test").with_format(None)}
    ds = load_config(str(out), f"{name}_l4").cast_column("image", __import__("datasets").Image(decode=False))
    moved_any = False
    for row in ds.cast_column("mask", __import__("datasets").Image(decode=False)):
        c = clean[row["image_id"]]
        cimg = np.array(c["image"])
        cmask = np.array(c["mask"]) > 127
        img, mask = pert.apply(cimg, row["strength"], np.random.default_rng(row["seed"]), mask=cmask)
        stored_img = decode_png(row["image"]["bytes"])
        stored_mask = decode_png(row["mask"]["bytes"]) > 127
        assert np.array_equal(stored_img, img)  # the row is reproducible from (strength, seed)
        assert np.array_equal(stored_mask, mask)
        assert row["bbox"] == mask_to_bbox(stored_mask)
        assert row["target_bbox"] == [float(v) for v in row["bbox"]]
        moved_any |= not np.array_equal(stored_mask, cmask)
    assert moved_any


def test_card_and_report(built):
    _, out = built
    card = (out / "README.md").read_text()
    assert "config_name: ct_ring_l3" in card and "config_name: clean" in card
    assert "synthetic" in card and "## Calibration" in card and "gallery/ct_ring.png" in card
    assert (out / "gallery" / "ct_ring.png").exists()
    rep = (out / "calibration_report.csv").read_text().splitlines()
    assert rep[0].startswith("perturbation,level,modality,cells,in_band_rate")
    assert len(rep) > 20


def test_unknown_config_error_lists_names(built):
    _, out = built
    with pytest.raises(ValueError, match="Did you mean ct_ring_l3"):
        load_config(str(out), "ct_rings_l3")


def test_other_settings_refused_unless_overwrite(built, tmp_path):
    out = tmp_path / "b"
    s1 = BuildSettings(perturbations=["gaussian_noise"], levels=[1], modalities=["ct"])
    build_benchmark(s1, str(out), progress=False, write_card=False)
    s2 = BuildSettings(perturbations=["gaussian_noise"], levels=[1, 2], modalities=["ct"])
    with pytest.raises(BuildError, match="other settings.*levels"):
        build_benchmark(s2, str(out), progress=False)
    build_benchmark(s2, str(out), overwrite=True, progress=False, write_card=False)
    assert os.path.exists(out / "data" / "gaussian_noise_l2")


def test_bad_arguments(tmp_path):
    assert main(["build", "--out", str(tmp_path / "x"), "--levels", "0-7"]) == 2
    assert main(["build", "--out", str(tmp_path / "x"), "--modalities", "pet"]) == 2
    assert main(["build", "--out", str(tmp_path / "y"), "--perturbations", "nope"]) == 2


def test_parse_config_name_keeps_underscores():
    assert parse_config_name("ct_metal_l3") == ("ct_metal", 3)
    assert parse_config_name("speckle_noise_l5") == ("speckle_noise", 5)
    assert parse_config_name("us_shadowing_l1") == ("us_shadowing", 1)
    assert parse_config_name("clean") is None


def _parquet_bytes(out):
    files = sorted(glob.glob(os.path.join(out, "data", "*", "*.parquet")))
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}


def test_interrupted_build_resumes_identically(tmp_path):
    args = ["--sources", "demo", "--modalities", "ct", "--perturbations",
            "gaussian_noise,translate,ct_ring,contrast", "--levels", "1-5", "--no-progress"]
    ref = tmp_path / "ref"
    assert main(["build", "--out", str(ref), *args]) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "medfm_hf.cli", "build", "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = out / ".medfm" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(glob.glob(str(markers / "*.json"))) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(glob.glob(str(markers / "*.json")))
    assert 1 <= done_before < 4, "the build should have been killed midway"
    assert main(["build", "--out", str(out), *args]) == 0
    assert _parquet_bytes(out) == _parquet_bytes(ref)
    assert not glob.glob(str(out / "data" / "*" / "*.tmp-*"))
    info = json.loads((out / ".medfm" / "build.json").read_text())
    assert info["settings"]["perturbations"] == ["gaussian_noise", "translate", "ct_ring", "contrast"]
