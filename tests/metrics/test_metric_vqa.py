"""The VQA answer parser on a table of realistic model answers; accuracy and its denominators."""

from __future__ import annotations

import math

import pytest

from medfm_hf.metrics import normalize_answer, parse_choice, vqa_scores

CXR = ["Pneumonia", "Pneumothorax", "Pleural effusion", "No finding"]
MOD = ["CT", "MRI", "X-ray", "Ultrasound"]
LABELLED = ["A. Benign nevus", "B. Melanoma", "C. Basal cell carcinoma"]
NEST = ["Pneumonia", "No pneumonia"]

# (answer, options, expected letter or None)
CASES = [
    # a letter alone
    ("B", CXR, "B"),
    ("b", CXR, "B"),
    ("(C)", CXR, "C"),
    ("D.", CXR, "D"),
    ("[A]", CXR, "A"),
    ("**B**", CXR, "B"),
    (" c ", MOD, "C"),
    # answer phrases
    ("The answer is (B) Pneumothorax.", CXR, "B"),
    ("The answer is B.", CXR, "B"),
    ("Answer: c", CXR, "C"),
    ("The correct answer is: D) No finding", CXR, "D"),
    ("Based on the image, the correct option is A.", CXR, "A"),
    ("I would choose option C because of the blunted costophrenic angle.", CXR, "C"),
    ("Option (b)", MOD, "B"),
    ("The best answer would be B, MRI.", MOD, "B"),
    ("Answer - A", MOD, "A"),
    ("The answer is A", CXR, "A"),
    ("**Answer:** B", LABELLED, "B"),
    ("Options: A) CT B) MRI C) X-ray D) Ultrasound. Answer: C", MOD, "C"),  # echoed options
    ("The answer is b pneumothorax", CXR, "B"),
    # a labelled letter first
    ("B. Pneumothorax", CXR, "B"),
    ("(C) Pleural effusion is visible.", CXR, "C"),
    ("d) No finding", CXR, "D"),
    ("A: CT", MOD, "A"),
    ("C. Basal cell carcinoma, given the pearly border.", LABELLED, "C"),
    # the option text
    ("Pneumothorax", CXR, "B"),
    ("pneumothorax.", CXR, "B"),
    ("This chest X-ray shows a pleural effusion.", CXR, "C"),
    ("The imaging modality is magnetic resonance imaging (MRI).", MOD, "B"),
    ("It looks like an ultrasound image.", MOD, "D"),
    ("Melanoma", LABELLED, "B"),
    ("The lesion is most consistent with basal cell carcinoma.", LABELLED, "C"),
    ("No pneumonia", NEST, "B"),  # nested options: the longer one wins
    ("Pneumonia.", NEST, "A"),
    ("A pneumothorax is seen on the left.", CXR, "B"),  # the article "A" is not a letter
    ("the answer is a pneumothorax", CXR, "B"),
    # a lone capital letter late in the text
    ("Looking at the lung fields, I'd go with C.", CXR, "C"),
    # unparsable: wrong by definition
    ("", CXR, None),
    ("I'm not sure.", CXR, None),
    ("It could be pneumonia or pneumothorax.", CXR, None),  # two options named
    ("The answer is E.", CXR, None),  # not an option
    ("F", MOD, None),
    ("I cannot answer this question without more clinical information.", CXR, None),
    ("Answer: I don't know", CXR, None),
    (None, CXR, None),
    ("Either A or B.", CXR, None),
]


def test_table_is_large_and_varied():
    assert len(CASES) >= 40
    assert sum(1 for *_, exp in CASES if exp is None) >= 8


@pytest.mark.parametrize(("answer", "options", "expected"), CASES)
def test_parse_realistic_answers(answer, options, expected):
    letter, rule = parse_choice(answer, options)
    assert letter == expected, f"{answer!r} read as {letter!r} by rule {rule!r}"
    if expected is None:
        assert rule in ("empty", "out_of_range", "ambiguous", "no_match")


def test_rules_are_reported():
    assert parse_choice("B", CXR)[1] == "letter"
    assert parse_choice("The answer is (B).", CXR)[1] == "phrase"
    assert parse_choice("B. Pneumothorax", CXR)[1] == "leading"
    assert parse_choice("Pneumothorax", CXR)[1] == "text"
    assert parse_choice("I'd go with C.", CXR)[1] == "loose"
    assert parse_choice("It could be pneumonia or pneumothorax.", CXR)[1] == "ambiguous"


def test_normalize_answer():
    assert normalize_answer("The Left  Lung, two nodules.") == "left lung 2 nodules"
    assert normalize_answer("**An** effusion!") == "effusion"


def test_vqa_scores_mixed_and_denominators():
    preds = ["The answer is (B).", "pneumonia", "", "Yes, there is an effusion.", "left lung", "Two.", None]
    refs = ["B", "Pneumothorax", "A", "yes", "The left lung", "2", "no"]
    opts = [CXR, CXR, CXR, [], [], [], None]
    out = vqa_scores(preds, refs, opts)
    assert out["per_sample_correct"] == [True, False, False, True, True, True, False]
    assert out["num_samples"] == 7 and out["num_correct"] == 4
    assert out["accuracy"] == pytest.approx(4 / 7)
    assert out["num_unparsable"] == 2  # "" and None, both in the denominator
    assert out["num_multiple_choice"] == 3 and out["accuracy_multiple_choice"] == pytest.approx(1 / 3)
    assert out["num_open"] == 4 and out["accuracy_open"] == pytest.approx(3 / 4)
    assert out["parsed"][:2] == ["B", "A"]


def test_open_ended_is_exact_after_normalisation():
    out = vqa_scores(["left upper lobe", "The left lung is affected", "No."], ["Left upper lobe", "left lung", "no"])
    assert out["per_sample_correct"] == [True, False, True]
    assert math.isnan(out["accuracy_multiple_choice"])


def test_bad_references_are_explained():
    with pytest.raises(ValueError, match="neither an option letter"):
        vqa_scores(["A"], ["Z"], [CXR])
    with pytest.raises(ValueError, match="one of each per sample"):
        vqa_scores(["A", "B"], ["A"], [CXR])
    with pytest.raises(ValueError, match="at most 26"):
        parse_choice("A", [str(i) for i in range(27)])
