"""Every table and figure the project writes: run summaries, robustness reports with paired bootstrap
confidence intervals, figures, the HTML report and the results leaderboard.

>>> from medfm_hf.reporting import ReportOptions, write_report          # doctest: +SKIP
>>> write_report(["results/grabcut", "results/medsam"], "report", ReportOptions(reference="grabcut"))
"""

from medfm_hf.reporting.load import Results, load_results
from medfm_hf.reporting.report import ReportOptions, write_report
from medfm_hf.reporting.stats import Estimate, PairedBootstrap, paired_drop

__all__ = ["Estimate", "PairedBootstrap", "ReportOptions", "Results", "load_results", "paired_drop",
           "write_report"]
