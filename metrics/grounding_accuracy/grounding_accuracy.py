"""Grounding accuracy (Acc@IoU) of boxes parsed from vision-language model answers."""

import datasets

import evaluate
from medfm_hf.metrics.grounding import DEFAULT_IOU_THRESHOLDS, grounding_scores

_CITATION = """\
@inproceedings{kazemzadeh2014referitgame,
  title     = {{ReferItGame}: Referring to Objects in Photographs of Natural Scenes},
  author    = {Kazemzadeh, Sahar and Ordonez, Vicente and Matten, Mark and Berg, Tamara},
  booktitle = {Proceedings of EMNLP},
  pages     = {787--798},
  year      = {2014}
}
"""

_DESCRIPTION = """\
Each model answer is parsed into a pixel box [x0, y0, x1, y1] of the image the model saw, whatever
convention it printed: [0, 1] fractions, 0-1000 integers (x-first, or y-first as Gemini/MedGemma's
`box_2d`), pixels; JSON, <box> tags, brackets or none, corners in any order. `box_format="auto"` (default)
chooses the convention per answer and reports it in `box_formats`; pass an explicit format (e.g.
"yxyx_1000") when the model's convention is known. Acc@IoU t is the fraction of answers whose box has
IoU >= t with the reference box; an answer without a readable box is a miss (IoU 0) in every denominator
and is also counted in `num_unparsable`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): raw model answers.
    references (`list` of `list` of `float`): reference boxes [x0, y0, x1, y1] in pixels.
    image_sizes (`list` of `list` of `int`): (width, height) of each image the model saw.
    box_format (`str`, default "auto"): "auto" or one of xyxy_norm, xyxy_1000, xyxy_pixel, yxyx_norm,
        yxyx_1000, yxyx_pixel.
    iou_thresholds (`list` of `float`, default [0.3, 0.5, 0.75]): thresholds of the acc@t keys.
Returns:
    acc@0.3, acc@0.5, acc@0.75 (`float`), mean_iou (`float`), num_samples, num_unparsable (`int`),
    unparsable_rate (`float`), per_sample_iou, parsed_boxes, box_formats (`list`), box_format_counts (`dict`).
Examples:
    >>> import evaluate
    >>> grounding = evaluate.load("metrics/grounding_accuracy")
    >>> out = grounding.compute(
    ...     predictions=['```json\\n[{"box_2d": [100, 200, 500, 600], "label": "nodule"}]\\n```',
    ...                  "The lesion is at [0.2, 0.1, 0.6, 0.5].",
    ...                  "I cannot localise the lesion."],
    ...     references=[[20, 10, 60, 50], [20, 10, 60, 50], [20, 10, 60, 50]],
    ...     image_sizes=[[100, 100], [100, 100], [100, 100]],
    ... )
    >>> round(out["acc@0.5"], 4), out["num_unparsable"], out["box_formats"]
    (0.6667, 1, ['yxyx_1000', 'xyxy_norm', None])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GroundingAccuracy(evaluate.Metric):
    """Acc@IoU and mean IoU of parsed VLM boxes (see ``medfm_hf.metrics.grounding``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("float64")),
                    "image_sizes": datasets.List(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references, image_sizes, box_format="auto", iou_thresholds=None):
        thresholds = DEFAULT_IOU_THRESHOLDS if iou_thresholds is None else tuple(iou_thresholds)
        return grounding_scores(
            predictions, references, image_sizes, box_format=box_format, iou_thresholds=thresholds
        )
