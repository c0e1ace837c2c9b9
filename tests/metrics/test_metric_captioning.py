"""BLEU and CIDEr-D against pycocoevalcap on the same tokens; the PTB and pure-Python tokenizers."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from medfm_hf.metrics import captioning
from medfm_hf.metrics.captioning import (
    bleu_from_tokens,
    bleu_scores,
    cider_d_from_tokens,
    cider_scores,
    ptb_available,
    ptb_tokenize,
    python_tokenize,
    tokenize_captions,
)

ROCO_STYLE = [
    "Axial CT scan of the abdomen showing a large hypodense lesion in the right lobe of the liver (arrow).",
    "Chest X-ray (PA view) demonstrating a right-sided pleural effusion.",
    "T2-weighted MRI of the brain shows a hyperintense lesion in the left temporal lobe.",
    "Ultrasound image of the thyroid gland with a 2.5 cm hypoechoic nodule.",
    "Coronal CT image reveals multiple enlarged mesenteric lymph nodes, the largest measuring 3 x 2 cm.",
    "Fundus photograph of the right eye shows optic disc swelling and peripapillary haemorrhages.",
    "Dermoscopy: an asymmetric pigmented lesion with irregular borders; melanoma can't be excluded.",
    "Endoscopic view of a sessile polyp in the sigmoid colon.",
    "Histopathology (H&E, x40) showing nests of atypical cells.",
    "OCT scan demonstrating subretinal fluid and a pigment epithelial detachment.",
    "Digital subtraction angiography shows a 7-mm aneurysm of the left MCA bifurcation.",
    "Follow-up CT at 6 months: the mass has decreased in size (from 45 to 20 mm).",
    "The patient's X-ray shows no acute cardiopulmonary abnormality.",
    "MRI revealed a well-defined, T1-hypointense and T2-hyperintense cystic lesion.",
    "Contrast-enhanced CT shows a filling defect in the right main pulmonary artery, i.e. pulmonary embolism.",
    "Sagittal T1 image: there's a collapse of the L3 vertebral body.",
    "Ultrasound shows the gallbladder with multiple echogenic stones and posterior acoustic shadowing.",
    "Chest radiograph: bilateral patchy opacities, consistent with COVID-19 pneumonia.",
    'A so-called "target sign" is seen on the abdominal ultrasound.',
    "Non-contrast head CT shows an acute subdural hematoma with 5-mm midline shift.",
]

VOCAB = (
    "the a of in with and shows showing right left lung liver lesion mass nodule opacity effusion ct mri "
    "x-ray ultrasound axial coronal image scan large small hypodense hyperintense arrow lobe pleural no "
    "acute finding chest brain kidney cyst fracture normal"
).split()


def _corpus(rng: np.random.Generator, n: int) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Random token captions; some hypotheses copy or shuffle their references, some are very short."""
    hyps, refs = [], []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        rs = [list(rng.choice(VOCAB, size=int(rng.integers(1, 16)))) for _ in range(k)]
        mode = rng.integers(0, 4)
        if mode == 0:
            h = list(rs[0])
        elif mode == 1:
            h = list(rng.permutation(rs[int(rng.integers(0, k))]))
        elif mode == 2:
            h = list(rng.choice(VOCAB, size=int(rng.integers(1, 4))))
        else:
            base = rs[int(rng.integers(0, k))]
            h = [w if rng.random() < 0.7 else str(rng.choice(VOCAB)) for w in base] + list(
                rng.choice(VOCAB, size=int(rng.integers(0, 5)))
            )
        hyps.append([str(w) for w in h])
        refs.append([[str(w) for w in r] for r in rs])
    return hyps, refs


def _coco(hyps, refs):
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    return gts, res


@pytest.fixture(scope="module")
def corpus():
    return _corpus(np.random.default_rng(6), 150)


def test_bleu_equals_pycocoevalcap(corpus):
    hyps, refs = corpus
    gts, res = _coco(hyps, refs)
    ref_corpus, ref_per_sample = Bleu(4).compute_score(gts, res, verbose=0)
    ours = bleu_from_tokens(hyps, refs)
    for k in range(4):
        assert abs(ours[f"bleu_{k + 1}"] - ref_corpus[k]) <= 1e-9
        np.testing.assert_allclose(ours[f"per_sample_bleu_{k + 1}"], ref_per_sample[k], rtol=0, atol=1e-9)
    assert len(hyps) >= 100
    assert 0.05 < ours["bleu_4"] < 0.95  # a corpus where the comparison means something


def test_cider_equals_pycocoevalcap(corpus):
    hyps, refs = corpus
    gts, res = _coco(hyps, refs)
    ref_mean, ref_per_sample = Cider().compute_score(gts, res)
    ours = cider_d_from_tokens(hyps, refs)
    assert abs(ours["cider"] - ref_mean) <= 1e-9
    np.testing.assert_allclose(ours["per_sample_cider"], ref_per_sample, rtol=0, atol=1e-9)
    assert ours["cider"] > 0.1


def test_realistic_captions_equal_pycocoevalcap_on_python_tokens():
    rng = np.random.default_rng(1)
    preds = [ROCO_STYLE[(i + 1) % len(ROCO_STYLE)] if i % 3 == 0 else c.lower() for i, c in enumerate(ROCO_STYLE)]
    refs = [[c, ROCO_STYLE[int(rng.integers(0, len(ROCO_STYLE)))]] for c in ROCO_STYLE]
    hyp_tok = [python_tokenize(p) for p in preds]
    ref_tok = [[python_tokenize(r) for r in rs] for rs in refs]
    gts, res = _coco(hyp_tok, ref_tok)
    bleu = bleu_scores(preds, refs, tokenizer="python")
    cider = cider_scores(preds, refs, tokenizer="python")
    assert bleu["tokenizer"] == cider["tokenizer"] == "python"
    assert abs(bleu["bleu"] - Bleu(4).compute_score(gts, res, verbose=0)[0][3]) <= 1e-9
    assert abs(cider["cider"] - Cider().compute_score(gts, res)[0]) <= 1e-9


def test_python_tokenizer_examples():
    assert python_tokenize("Chest X-ray (PA view) isn't normal.") == [
        "chest", "x-ray", "-lrb-", "pa", "view", "-rrb-", "is", "n't", "normal",
    ]  # fmt: skip
    assert python_tokenize("A 2.5 cm nodule; 50% effusion, e.g. pneumonia...") == [
        "a", "2.5", "cm", "nodule", "50", "%", "effusion", "e.g.", "pneumonia",
    ]  # fmt: skip
    assert python_tokenize("") == []


needs_java = pytest.mark.skipif(not ptb_available(), reason="java or the pycocoevalcap PTB jar is missing")


@needs_java
def test_ptb_tokenizer_equals_pycocoevalcap_and_python_agrees_mostly():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    jar_dir = os.path.dirname(captioning._ptb_jar())
    if not os.access(jar_dir, os.W_OK):
        pytest.skip("pycocoevalcap's tokenizer writes a temp file next to its jar; that folder is read-only")
    theirs = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(ROCO_STYLE)})
    ours = ptb_tokenize(ROCO_STYLE)
    assert [" ".join(t) for t in ours] == [theirs[i][0] for i in range(len(ROCO_STYLE))]
    # the pure-Python fallback gives the same tokens on these (its known misses: "dr.", "fig." ...)
    same = sum(python_tokenize(c) == t for c, t in zip(ROCO_STYLE, ours))
    assert same == len(ROCO_STYLE), [(python_tokenize(c), t) for c, t in zip(ROCO_STYLE, ours)]


@needs_java
def test_auto_uses_ptb_when_java_is_there():
    preds = ["Small nodule (arrow) in the left lung."]
    refs = [["A small nodule in the left lung."]]
    out = bleu_scores(preds, refs)
    assert out["tokenizer"] == "ptb"
    hyp, ref = ptb_tokenize(preds), [ptb_tokenize(refs[0])]
    assert out["bleu"] == bleu_from_tokens(hyp, ref)["bleu_4"]


def test_auto_falls_back_to_python_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(captioning, "ptb_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="medfm_hf.metrics.captioning"):
        out = cider_scores(["a nodule"], [["a nodule"]])
    assert out["tokenizer"] == "python"
    assert "pure-Python tokenizer" in caplog.text


def test_ptb_without_java_is_explained(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="java"):
        ptb_tokenize(["a caption"])


def test_whitespace_tokenizer_and_single_reference_strings():
    toks, used = tokenize_captions(["Left  lung ."], "whitespace")
    assert (toks, used) == ([["Left", "lung", "."]], "whitespace")
    a = bleu_scores(["left lung nodule"], ["left lung nodule"], tokenizer="whitespace")
    b = bleu_scores(["left lung nodule"], [["left lung nodule"]], tokenizer="whitespace")
    assert a["bleu_3"] == b["bleu_3"] == pytest.approx(1.0)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown tokenizer"):
        tokenize_captions(["x"], "spacy")
    with pytest.raises(ValueError, match="no reference caption"):
        bleu_scores(["x"], [[]], tokenizer="python")
    with pytest.raises(ValueError, match="one list per prediction"):
        cider_scores(["x", "y"], [["x"]], tokenizer="python")
