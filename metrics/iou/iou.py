"""Per-image intersection over union (Jaccard index) of binary segmentation masks."""

import datasets

import evaluate
from medfm_hf.metrics.segmentation import segmentation_scores

_CITATION = """\
@article{jaccard1912distribution,
  title   = {The distribution of the flora in the alpine zone},
  author  = {Jaccard, Paul},
  journal = {New Phytologist},
  volume  = {11},
  number  = {2},
  pages   = {37--50},
  year    = {1912}
}
"""

_DESCRIPTION = """\
Intersection over union |P ∩ G| / |P ∪ G| of each predicted mask P with its reference mask G, computed per
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
    iou (`float`): mean IoU over images (NaN scores skipped).
    per_image_iou (`list` of `float`): IoU of each image, in input order.
    num_images (`int`), num_both_empty (`int`).
Examples:
    >>> import evaluate
    >>> import numpy as np
    >>> iou = evaluate.load("metrics/iou")
    >>> pred = np.zeros((4, 4), bool); pred[:2, :2] = True
    >>> ref = np.zeros((4, 4), bool); ref[:2, :] = True
    >>> empty = np.zeros((4, 4), bool)
    >>> out = iou.compute(predictions=[pred, empty], references=[ref, empty])
    >>> out["iou"], out["per_image_iou"]
    (0.75, [0.5, 1.0])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Iou(evaluate.Metric):
    """Per-image IoU of binary masks (see ``medfm_hf.metrics.segmentation``)."""

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
            reference_urls=["https://en.wikipedia.org/wiki/Jaccard_index"],
        )

    def _compute(self, predictions, references, threshold=0.5, empty_score=1.0):
        return segmentation_scores(
            predictions, references, metric="iou", threshold=threshold, empty_score=empty_score
        )
