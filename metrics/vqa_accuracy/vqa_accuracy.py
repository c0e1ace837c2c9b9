"""VQA accuracy: multiple choice by option letter or option text, open questions by normalised exact match."""

import datasets

import evaluate
from medfm_hf.metrics.vqa import vqa_scores

_CITATION = """\
@inproceedings{antol2015vqa,
  title     = {{VQA}: Visual Question Answering},
  author    = {Antol, Stanislaw and Agrawal, Aishwarya and Mitchell, Margaret and Batra, Dhruv and
               Zitnick, C. Lawrence and Parikh, Devi},
  booktitle = {Proceedings of ICCV},
  year      = {2015}
}
@article{hu2024omnimedvqa,
  title   = {{OmniMedVQA}: A New Large-Scale Comprehensive Evaluation Benchmark for Medical {LVLM}},
  author  = {Hu, Yutao and Li, Tianbin and Lu, Quanfeng and Shao, Wenqi and He, Junjun and Qiao, Yu and Luo, Ping},
  journal = {arXiv:2402.09181},
  year    = {2024}
}
"""

_DESCRIPTION = """\
Accuracy of free-text VQA answers. With options (multiple choice), the chosen option is read as a letter
("B", "(b)", "B.", "The answer is (B) ...", "Answer: c", "option D") or as the text of exactly one option
("Pneumothorax."); without options (open questions), answer and reference are normalised (lower case,
no punctuation or articles, number words as digits) and must match exactly (for yes/no references, the
first word of the answer). An answer that cannot be read (empty, several options, a letter outside the
options) is wrong, stays in the denominator and is counted in `num_unparsable`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): model answers ("" for a failed generation).
    references (`list` of `str`): the option letter or option text (multiple choice), or the answer.
    options (`list` of `list` of `str`): the options shown for each question, in order; [] for an open
        question.
Returns:
    accuracy (`float`), num_samples, num_correct, num_unparsable (`int`), accuracy_multiple_choice,
    accuracy_open (`float`, NaN if none), num_multiple_choice, num_open (`int`), per_sample_correct
    (`list` of `bool`), parsed (`list`: letter or normalised answer read, None if unparsable).
Examples:
    >>> import evaluate
    >>> vqa = evaluate.load("metrics/vqa_accuracy")
    >>> out = vqa.compute(
    ...     predictions=["The answer is (B) pneumothorax.", "pneumonia", "Yes, there is an effusion.", ""],
    ...     references=["B", "A", "yes", "C"],
    ...     options=[["Pneumonia", "Pneumothorax"], ["Pneumonia", "Pneumothorax"], [], ["CT", "MRI", "X-ray"]],
    ... )
    >>> out["accuracy"], out["num_unparsable"], out["parsed"]
    (0.75, 1, ['B', 'A', 'yes', None])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    """Multiple-choice and open VQA accuracy (see ``medfm_hf.metrics.vqa``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "options": datasets.List(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, options):
        return vqa_scores(predictions, references, options)
