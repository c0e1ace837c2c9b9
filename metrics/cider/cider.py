"""CIDEr-D of captions, equal to the COCO caption evaluation (pycocoevalcap) on the same tokens."""

import datasets

import evaluate
from medfm_hf.metrics.captioning import cider_scores

_CITATION = """\
@inproceedings{vedantam2015cider,
  title     = {{CIDEr}: Consensus-based Image Description Evaluation},
  author    = {Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {Proceedings of CVPR},
  pages     = {4566--4575},
  year      = {2015}
}
"""

_DESCRIPTION = """\
CIDEr-D as the COCO caption evaluation computes it (pycocoevalcap `Cider`): TF-IDF weighted n-gram
(n = 1..4) cosine similarity between a caption and each of its references, with clipped candidate counts
and a Gaussian length penalty (sigma 6), averaged over references and n, times 10. The IDF comes from the
references of the evaluated set, so the score of one caption depends on the others: compute it on the
whole set (add_batch, then compute), not per sample. Tokenisation as for `metrics/bleu`; the result's
`tokenizer` key says which tokenizer was used.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated captions.
    references (`list` of `list` of `str`, or `list` of `str`): one or more reference captions each.
    tokenizer (`str`, default "auto"): "auto", "ptb" (needs java), "python", or "whitespace".
    n (`int`, default 4): highest n-gram order.
    sigma (`float`, default 6.0): width of the length penalty.
Returns:
    cider (`float`): mean CIDEr-D over captions; per_sample_cider (`list` of `float`); tokenizer (`str`).
Examples:
    >>> import evaluate
    >>> cider = evaluate.load("metrics/cider")
    >>> out = cider.compute(
    ...     predictions=["small nodule in the left lung", "normal chest radiograph", "fracture of the femur"],
    ...     references=[["a small nodule in the left lung"], ["no acute findings"], ["a femoral fracture"]],
    ...     tokenizer="python")
    >>> round(out["cider"], 4), out["tokenizer"]
    (3.2909, 'python')
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    """COCO CIDEr-D (see ``medfm_hf.metrics.captioning``)."""

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

    def _compute(self, predictions, references, tokenizer="auto", n=4, sigma=6.0):
        return cider_scores(predictions, references, tokenizer=tokenizer, n=n, sigma=sigma)
