"""Per-image Dice coefficient (F1 of the foreground) of binary segmentation masks."""

import datasets

import evaluate
from medfm_hf.metrics.segmentation import segmentation_scores

_CITATION = """\
@article{dice1945measures,
  title   = {Measures of the amount of ecologic association between species},
  author  = {Dice, Lee R.},
  journal = {Ecology},
  volume  = {26},
  number  = {3},
  pages   = {297--302},
  year    = {1945}
}
"""

_DESCRIPTION = """\
Dice coefficient 2|P ∩ G| / (|P| + |G|) of each predicted mask P with its reference mask G, computed per
image and averaged over images. Probability maps are thresholded at 0.5 (foreground is > threshold).
When both masks are empty the score is `empty_score` (1.0 by default: correctly predicting "nothing here"
is right; pass float("nan") to leave such images out of the mean).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2-D arrays): predicted masks (bool, {0,1}, {0,255}) or probabilities in [0, 1].
    references (`list` of 2-D arrays): reference masks, same shapes as the predictions.
    threshold (`float`, default 0.5): probability threshold.
    empty_score (`float`, default 1.0): the score of an image where both masks are empty.
Returns:
    dice (`float`): mean Dice over images (NaN scores skipped).
    per_image_dice (`list` of `float`): Dice of each image, in input order.
    num_images (`int`), num_both_empty (`int`).
Examples:
    >>> import evaluate
    >>> import numpy as np
    >>> dice = evaluate.load("metrics/dice")
    >>> pred = np.zeros((4, 4), bool); pred[:2, :2] = True
    >>> ref = np.zeros((4, 4), bool); ref[:2, :] = True
    >>> empty = np.zeros((4, 4), bool)
    >>> out = dice.compute(predictions=[pred, empty], references=[ref, empty])
    >>> out["dice"], out["per_image_dice"]
    (0.8333333333333333, [0.6666666666666666, 1.0])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Dice(evaluate.Metric):
    """Per-image Dice of binary masks (see ``medfm_hf.metrics.segmentation``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.List(datasets.Value("float32"))),
                    "references": datasets.List(datasets.List(datasets.Value("float32"))),
                }
            ),
            reference_urls=["https://en.wikipedia.org/wiki/S%C3%B8rensen%E2%80%93Dice_coefficient"],
        )

    def _compute(self, predictions, references, threshold=0.5, empty_score=1.0):
        return segmentation_scores(
            predictions, references, metric="dice", threshold=threshold, empty_score=empty_score
        )
