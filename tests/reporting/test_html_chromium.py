"""report.html in headless Chromium: it renders offline (screenshot) and its tables sort on a header click."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest

from medfm_hf.reporting.html import Document
from medfm_hf.reporting.stats import Estimate

_spec = importlib.util.spec_from_file_location(
    "screenshot_report", os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "screenshot_report.py"))
shot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shot)

needs_chromium = pytest.mark.skipif(shot.find_chromium() is None, reason="chromium is not installed")


@needs_chromium
def test_screenshot_of_report(results_dirs, tmp_path):
    from medfm_hf.reporting import ReportOptions, write_report

    res = write_report(results_dirs, str(tmp_path / "rep"), ReportOptions(n_boot=100))
    png = shot.screenshot(res["html"], str(tmp_path / "page.png"), width=1000, height=1400)
    import cv2

    img = cv2.imread(png)
    assert img.shape[:2] == (1400, 1000)
    # a rendered page, not a blank one: text and the embedded figures give many distinct colours
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    assert shot.main([str(tmp_path / "missing.html"), "--out", str(tmp_path / "x.png")]) == 2


@needs_chromium
def test_tables_sort_in_browser(tmp_path):
    doc = Document("t")
    doc.table(pd.DataFrame({"model": ["a", "b", "c"],
                            "drop": [Estimate(0.2, 0.1, 0.3), Estimate(-0.05, -0.1, 0.0), Estimate(0.1, 0.0, 0.2)]}))
    html = doc.to_html()
    # click the "drop" header once (ascending), as a user would
    click = ('<script>document.querySelectorAll("thead th")[1].click();</script></body>')
    path = tmp_path / "t.html"
    path.write_text(html.replace("</body>", click))
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([shot.find_chromium(), *shot.FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                               f"file://{path}"], capture_output=True, text=True, timeout=120)
    rows = re.findall(r"<tr><td>(\w)</td>", proc.stdout)
    assert rows == ["b", "c", "a"], proc.stdout[-1500:]  # by value (-0.05 < 0.1 < 0.2), not by text
