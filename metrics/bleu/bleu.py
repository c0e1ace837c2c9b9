"""BLEU-1..4 of captions, equal to the COCO caption evaluation (pycocoevalcap) on the same tokens."""

import datasets

import evaluate
from medfm_hf.metrics.captioning import bleu_scores

_CITATION = """\
@inproceedings{papineni2002bleu,
  title     = {{BLEU}: a Method for Automatic Evaluation of Machine Translation},
  author    = {Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle = {Proceedings of ACL},
  pages     = {311--318},
  year      = {2002}
}
@article{chen2015microsoft,
  title   = {Microsoft {COCO} Captions: Data Collection and Evaluation Server},
  author  = {Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta, Saurabh
             and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal = {arXiv:1504.00325},
  year    = {2015}
}
"""

_DESCRIPTION = """\
Corpus BLEU-1..4 as the COCO caption evaluation computes it (pycocoevalcap `Bleu(4)`): modified n-gram
precisions summed over the corpus, brevity penalty with the closest reference length, COCO's tiny
smoothing constants. BLEU-4 (`bleu`) is the headline. Captions are tokenised with the PTB tokenizer that
ships in pycocoevalcap when Java is available, else with a documented pure-Python tokenizer; the result's
`tokenizer` key says which.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated captions.
    references (`list` of `list` of `str`, or `list` of `str`): one or more reference captions each.
    tokenizer (`str`, default "auto"): "auto", "ptb" (needs java), "python", or "whitespace"
        (already tokenised).
    max_n (`int`, default 4): highest n-gram order.
Returns:
    bleu (`float`): BLEU-4 (BLEU-max_n); bleu_1 ... bleu_4 (`float`); per_sample_bleu_1 ... (`list`);
    brevity_ratio (`float`), hypothesis_length, reference_length (`int`); tokenizer (`str`).
Examples:
    >>> import evaluate
    >>> bleu = evaluate.load("metrics/bleu")
    >>> out = bleu.compute(predictions=["A small nodule in the left lung."],
    ...                    references=[["Small nodule in the left lung.", "A left lung nodule."]],
    ...                    tokenizer="python")
    >>> round(out["bleu_1"], 4), round(out["bleu"], 4), out["tokenizer"]
    (1.0, 0.8409, 'python')
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    """COCO BLEU-1..4 (see ``medfm_hf.metrics.captioning``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.List(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
                ),
            ],
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, tokenizer="auto", max_n=4):
        return bleu_scores(predictions, references, tokenizer=tokenizer, max_n=max_n)
