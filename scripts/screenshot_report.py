"""Open a ``report.html`` in headless Chromium and save a screenshot (checks the page renders offline).

    python scripts/screenshot_report.py REPORT_DIR/report.html --out docs/reporting/report.png

Chromium (Debian: ``apt-get install chromium``) runs with networking features off and a fresh profile, so a
report that needed anything from the network would show it. Exit status 0 when the PNG was written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: str, out: str, width: int = 1280, height: int = 2400, timeout: float = 120.0) -> str:
    """Render ``html`` into the PNG ``out`` (``width`` x ``height`` pixels) with headless Chromium."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found; install it (Debian: apt-get install chromium)")
    if not os.path.isfile(html):
        raise FileNotFoundError(f"{html} does not exist; make it with `medfm-robust report`")
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out}", "file://" + os.path.abspath(html)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("html", help="the report.html to open")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    a = p.parse_args(argv)
    try:
        path = screenshot(a.html, a.out, a.width, a.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
