"""Bad input to perturbations, and the `perturbations` / `perturb` subcommands."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medfm_hf.calibration import BANDS
from medfm_hf.cli import main
from medfm_hf.perturbations import PerturbationError, get_perturbation, list_perturbations
from medfm_hf.ssim import ssim

from .conftest import grey_image, rgb_image, to_uint16


@pytest.mark.parametrize(
    ("image", "strength", "match"),
    [
        (np.full((32, 32), np.nan), 0.1, "NaN"),
        (np.zeros((1, 1), np.uint8), 0.1, "too small"),
        (np.zeros((32, 32, 4), np.uint8), 0.1, "RGBA"),
        (np.zeros((32, 32), np.float32), 0.1, "dtype"),
        (np.zeros((32, 32, 2), np.uint8), 0.1, "shape"),
        (None, -0.1, "strength must be"),
        (None, float("nan"), "strength must be"),
    ],
)
@pytest.mark.parametrize("name", ["gaussian_noise", "rotate"])
def test_bad_perturbation_input(name, image, strength, match):
    img = grey_image() if image is None else image
    with pytest.raises(PerturbationError, match=match):
        get_perturbation(name)(img, strength, np.random.default_rng(0))


def test_unknown_name_lists_the_catalog():
    with pytest.raises(PerturbationError, match="unknown perturbation 'nope'.*medfm-robust perturbations"):
        get_perturbation("nope")


def test_constant_image_is_accepted_by_perturbations():
    # Perturbing a constant image is well defined (only calibration refuses it, see test_calibration).
    flat = np.full((32, 32), 90, np.uint8)
    out = get_perturbation("gaussian_noise")(flat, 0.1, np.random.default_rng(0))
    assert out.shape == flat.shape and out.std() > 0


def test_saturation_refuses_grey_images_clearly():
    with pytest.raises(PerturbationError, match="colour"):
        get_perturbation("saturation").fn(grey_image(), 1.0, np.random.default_rng(0))


def test_no_min_max_normalisation():
    # A dark, low-contrast uint16 image must not be stretched: contrast at strength 0.5 halves deviations.
    img = (to_uint16(grey_image()) // 64).astype(np.uint16)  # values in 0..1023
    out = get_perturbation("contrast")(img, 0.5, np.random.default_rng(0))
    assert out.max() <= 1023
    dev_in = img.astype(float) - img.mean()
    dev_out = out.astype(float) - img.mean()
    assert np.allclose(dev_out, 0.5 * dev_in, atol=1.0)


def test_jpeg_uint16_keeps_fine_bits_where_jpeg_changes_nothing():
    img = to_uint16(rgb_image())
    out = get_perturbation("jpeg")(img, 5, np.random.default_rng(0))
    assert out.dtype == np.uint16
    assert ssim(img, out) > 0.9


def test_perturbations_command_lists_catalog(capsys):
    assert main(["perturbations"]) == 0
    out = capsys.readouterr().out
    for name in list_perturbations():
        assert name in out
    assert f"{len(list_perturbations())} perturbations registered" in out


def test_perturbations_command_modality_filter(capsys):
    assert main(["perturbations", "--modality", "fundus"]) == 0
    out = capsys.readouterr().out
    assert "gaussian_noise" in out
    others = [n for n in list_perturbations() if n not in list_perturbations("fundus")]
    assert all(f"\n{n} " not in out for n in others)
    assert f"{len(list_perturbations('fundus'))} perturbations for fundus" in out


@pytest.mark.parametrize("bits", [8, 16])
def test_perturb_command_writes_calibrated_image(tmp_path, capsys, bits):
    img = rgb_image() if bits == 8 else to_uint16(rgb_image())
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "sub" / "out.png"
    assert main(["perturb", str(src), "--name", "gaussian_blur", "--level", "2", "--seed", "1",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "strength" in text and "SSIM" in text and "in band" in text
    saved = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert saved.dtype == img.dtype and saved.shape == img.shape
    value = ssim(img, saved)
    lo, hi = BANDS[2]
    assert lo <= value <= hi
    assert f"SSIM {value:.4f}" in text


def test_perturb_seed_changes_random_draws(tmp_path, capsys):
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), grey_image())
    outs = []
    for seed in ("0", "1"):
        dst = tmp_path / f"o{seed}.png"
        assert main(["perturb", str(src), "--name", "gaussian_noise", "--level", "3", "--seed", seed,
                     "--out", str(dst)]) == 0
        outs.append(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED))
    assert not np.array_equal(*outs)


@pytest.mark.parametrize(
    ("make", "name", "match"),
    [
        ("ok", "no_such", "unknown perturbation"),
        ("missing", "jpeg", "does not exist"),
        ("garbage", "jpeg", "cannot read"),
        ("rgba", "jpeg", "RGBA"),
    ],
)
def test_perturb_command_errors(tmp_path, capsys, make, name, match):
    src = tmp_path / "in.png"
    if make == "ok":
        cv2.imwrite(str(src), grey_image())
    elif make == "garbage":
        src.write_text("not an image")
    elif make == "rgba":
        cv2.imwrite(str(src), np.dstack([grey_image()] * 4))
    rc = main(["perturb", str(src), "--name", name, "--level", "1", "--out", str(tmp_path / "o.png")])
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_applies_to_respects_channel_restrictions():
    from medfm_hf.perturbations.registry import Perturbation

    grey, rgb = grey_image(), rgb_image()
    only_grey = Perturbation("g", lambda i, s, r: i, ("ct",), (0.0, 1.0), "test", grey_only=True)
    assert only_grey.applies_to("ct", grey) and not only_grey.applies_to("ct", rgb)
    assert not only_grey.applies_to("mri", grey)
    sat = get_perturbation("saturation")
    assert sat.applies_to("fundus", rgb) and not sat.applies_to("fundus", grey)


def test_perturb_command_says_why_a_level_is_out_of_band(tmp_path, capsys):
    """A smooth image cannot reach JPEG level 5 at quality >= 10: the output says it stopped at the ceiling."""
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.clip(100 + 0.3 * xx + 0.2 * yy, 0, 255).astype(np.uint8)
    src = tmp_path / "smooth.png"
    cv2.imwrite(str(src), img)
    assert main(["perturb", str(src), "--name", "jpeg", "--level", "5", "--out", str(tmp_path / "o.png")]) == 0
    text = capsys.readouterr().out
    assert "NOT in band: ceiling" in text and "physical ceiling 90" in text
