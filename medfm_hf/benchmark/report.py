"""Moved to :mod:`medfm_hf.reporting.calibration` (all tables live in ``reporting/``); kept importable."""

from medfm_hf.reporting.calibration import calibration_cells, calibration_report, config_table

__all__ = ["calibration_cells", "calibration_report", "config_table"]
