"""Tools refuse to destroy their inputs or exhaust memory; metrics refuse nonsense (reliability probe)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from medfm_hf.cli import main
from medfm_hf.metrics.captioning import bleu_scores, cider_scores
from medfm_hf.metrics.grounding import grounding_scores
from medfm_hf.metrics.vqa import parse_choice, vqa_scores

from .conftest import write_folder

OPTIONS = ["pneumonia", "pneumothorax", "effusion", "normal"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---- B6 / B7: resize ---------------------------------------------------------------------------------------


def test_resize_refuses_to_write_over_its_inputs(tmp_path, capsys):
    src = write_folder(tmp_path / "fold", n=2)
    before = {p.name: p.read_bytes() for p in (src / "images").iterdir()}
    rc = main(["resize", str(src / "images"), str(src / "masks"), "--size", "32", "--out", str(src)])
    assert rc == 2 and "over the input folder" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in (src / "images").iterdir()} == before


def test_resize_refuses_an_absurd_size_with_a_memory_estimate(tmp_path, capsys):
    src = write_folder(tmp_path / "fold", n=1)
    rc = main(["resize", str(src / "images"), str(src / "masks"), "--size", "100000", "--out", str(tmp_path / "o")])
    line = _one_line(capsys)
    assert rc == 2 and "GiB per image" in line and "at most 16384" in line
    assert not (tmp_path / "o").exists()


def test_resize_still_works_into_a_new_folder(tmp_path):
    src = write_folder(tmp_path / "fold", n=2)
    assert main(["resize", str(src / "images"), str(src / "masks"), "--size", "32", "--out", str(tmp_path / "o")]) == 0
    assert cv2.imread(str(tmp_path / "o" / "images" / "im0.png"), cv2.IMREAD_UNCHANGED).shape == (32, 32)


# ---- B8: perturb ---------------------------------------------------------------------------------------------


@pytest.fixture
def sixteen(tmp_path):
    yy, xx = np.mgrid[:48, :48]
    img = (30000 + 20000 * np.sin(xx / 4.0) * np.cos(yy / 5.0)).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    cv2.imwrite(str(path), img)
    return path


def test_perturb_refuses_16_bit_to_jpeg(sixteen, tmp_path, capsys):
    rc = main(["perturb", str(sixteen), "--name", "gaussian_noise", "--level", "1", "--out", str(tmp_path / "x.jpg")])
    assert rc == 2 and "16-bit" in _one_line(capsys)
    assert not (tmp_path / "x.jpg").exists()


def test_perturb_refuses_its_input_and_a_missing_extension(sixteen, tmp_path, capsys):
    before = sixteen.read_bytes()
    assert main(["perturb", str(sixteen), "--name", "gaussian_noise", "--level", "1", "--out", str(sixteen)]) == 2
    assert "is the input image" in _one_line(capsys)
    assert main(["perturb", str(sixteen), "--name", "gaussian_noise", "--level", "1", "--out", str(tmp_path / "p9")]) == 2
    assert "needs an image extension" in _one_line(capsys)
    assert sixteen.read_bytes() == before


def test_perturb_keeps_16_bit_in_png(sixteen, tmp_path):
    out = tmp_path / "p.png"
    assert main(["perturb", str(sixteen), "--name", "gaussian_noise", "--level", "1", "--out", str(out)]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint16


# ---- mask2box threshold -------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", ["300", "-5", "255"])
def test_mask2box_threshold_must_lie_in_the_dtype_range(tmp_path, capsys, threshold):
    src = write_folder(tmp_path / "fold", n=1)
    rc = main(["mask2box", str(src / "masks"), "--out", str(tmp_path / "b.csv"), f"--threshold={threshold}"])
    assert rc == 2 and "--threshold must be an integer in 0-254" in _one_line(capsys)


def test_mask2box_out_under_a_file_is_one_line(tmp_path, capsys):
    src = write_folder(tmp_path / "fold", n=1)
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["mask2box", str(src / "masks"), "--out", str(f / "x.csv")]) == 2
    assert "mask2box: error:" in _one_line(capsys)


# ---- B9: VQA hedges and negations --------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["A B C D", "A/B/C/D", "(A)(B)(C)(D)", "either A or B", "A or D", "B and C."])
def test_hedged_answers_are_unparsable(answer):
    letter, rule = parse_choice(answer, OPTIONS)
    assert letter is None and rule == "ambiguous"


@pytest.mark.parametrize("answer", ["It is not D.", "Not A", "not pneumonia", "The answer is B, not A",
                                    "neither A nor B"])
def test_negated_answers_are_unparsable(answer):
    letter, rule = parse_choice(answer, OPTIONS)
    assert letter is None and rule in ("negated", "ambiguous")


def test_hedges_earn_no_credit_but_plain_answers_do():
    preds = ["A B C D", "A/B/C/D", "It is not D.", "D", "The answer is (D) normal."]
    out = vqa_scores(preds, ["D"] * 5, [OPTIONS] * 5)
    assert out["per_sample_correct"] == [False, False, False, True, True]
    assert out["num_unparsable"] == 3


def test_an_option_that_itself_says_no_is_still_read():
    assert parse_choice("No pneumonia", ["Pneumonia", "No pneumonia"]) == ("B", "text")


def test_parse_choice_without_options_is_a_clear_error():
    with pytest.raises(ValueError, match="options must be a list"):
        parse_choice("A", None)


# ---- B10: grounding reference boxes ------------------------------------------------------------------------


@pytest.mark.parametrize("ref, msg", [
    ([math.nan, 10, 50, 50], "finite"),
    ([0, 0, math.inf, 50], "finite"),
    ([50, 10, 10, 50], "inverted"),
    ([0, 40, 50, 10], "inverted"),
])
def test_bad_reference_boxes_raise(ref, msg):
    with pytest.raises(ValueError, match=msg):
        grounding_scores(["[0, 0, 50, 50]"], [ref], [(100, 100)])


# ---- BLEU / CIDEr on empty input ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [bleu_scores, cider_scores])
def test_empty_caption_input_is_a_clear_error(fn):
    with pytest.raises(ValueError, match="no predictions"):
        fn([], [], tokenizer="python")
