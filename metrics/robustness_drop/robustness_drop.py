"""Robustness drop: clean vs perturbed score, absolute and relative, per severity level and overall."""

import datasets

import evaluate
from medfm_hf.metrics.robustness import robustness_drop

_CITATION = """\
@inproceedings{hendrycks2019benchmarking,
  title     = {Benchmarking Neural Network Robustness to Common Corruptions and Perturbations},
  author    = {Hendrycks, Dan and Dietterich, Thomas},
  booktitle = {Proceedings of ICLR},
  year      = {2019}
}
"""

_DESCRIPTION = """\
Given, for each perturbed sample, its score (`predictions`), the score of the same sample's clean image
(`references`) and the severity level, reports per level the mean clean score, the mean perturbed score,
the absolute drop (clean - perturbed) and the relative drop (absolute / clean, a ratio of means), and
overall the mean of those over levels (every level weighs the same) plus a `pooled` summary over all
pairs. Pairs with a NaN score on either side are excluded from both sides and counted in `num_excluded`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): per-sample score on the perturbed image (IoU, Dice, 0/1 correct ...).
    references (`list` of `float`): the same sample's score on the clean image.
    levels (`list` of `int`): the severity level (1-5) of each perturbed sample.
Returns:
    absolute_drop, relative_drop, clean, perturbed (`float`, means over levels); pooled (`dict`);
    per_level (`dict` level -> {clean, perturbed, absolute_drop, relative_drop, num_pairs});
    levels (`list`), num_pairs, num_excluded (`int`).
Examples:
    >>> import evaluate
    >>> drop = evaluate.load("metrics/robustness_drop")
    >>> out = drop.compute(predictions=[0.8, 0.6, 0.4, 0.2], references=[0.8, 0.8, 0.8, 0.8], levels=[1, 1, 3, 3])
    >>> round(out["per_level"][1]["absolute_drop"], 4), round(out["absolute_drop"], 4), round(out["relative_drop"], 4)
    (0.1, 0.3, 0.375)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RobustnessDrop(evaluate.Metric):
    """Clean-vs-perturbed drop per level (see ``medfm_hf.metrics.robustness``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float64"),
                    "references": datasets.Value("float64"),
                    "levels": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, levels):
        return robustness_drop(predictions, references, levels)
