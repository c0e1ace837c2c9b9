"""Results are reported overall and for the rows whose target stays visible (>= 50 % of the mask)."""

import numpy as np
import pandas as pd

from medfm_hf.reporting.runs import stats_by_level, summary_table, visible_rows


def _results():
    rows = []
    for i in range(4):
        rows.append({"image_id": f"x{i}", "kind": "clean", "name": "clean", "level": 0, "iou": 0.8, "dice": 0.9,
                     "iou_drop": 0.0, "dice_drop": 0.0, "clean_iou": 0.8, "ssim": None, "in_band": None,
                     "epsilon": None, "target_visible_fraction": None})
    # an occluding perturbation: images 0, 1 keep their target visible, 2, 3 lose it (and score 0)
    for i, (tvf, iou) in enumerate([(1.0, 0.7), (0.6, 0.5), (0.2, 0.0), (0.0, 0.0)]):
        rows.append({"image_id": f"x{i}", "kind": "perturbation", "name": "endo_blood", "level": 5, "iou": iou,
                     "dice": iou, "iou_drop": 0.8 - iou, "dice_drop": 0.9 - iou, "clean_iou": 0.8, "ssim": 0.3,
                     "in_band": True, "epsilon": None, "target_visible_fraction": tvf})
    return pd.DataFrame(rows)


def test_visible_rows_threshold_and_missing_values():
    df = pd.DataFrame({"target_visible_fraction": [None, 0.5, 0.49, 1.0, np.nan]})
    assert visible_rows(df).tolist() == [True, True, False, True, True]
    assert visible_rows(pd.DataFrame({"iou": [0.1]})).tolist() == [True]  # older results: no column


def test_stats_and_summary_report_visible_subset():
    df = _results()
    st = stats_by_level(df).set_index("name").loc["endo_blood"]
    assert st["n"] == 4 and st["n_visible"] == 2
    assert np.isclose(st["iou"], 0.3)                      # all rows: (0.7 + 0.5 + 0 + 0) / 4
    assert np.isclose(st["iou_visible"], 0.6)              # visible rows only: (0.7 + 0.5) / 2
    assert np.isclose(st["iou_drop_visible"], 0.2)
    summ = summary_table(df).set_index("name")
    assert np.isclose(summ.loc["endo_blood", "iou_visible"], 0.6)
