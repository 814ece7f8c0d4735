"""The HTML report renders in a real headless browser (Debian's chromium) to a picture that
is neither blank nor unstyled.

`make test` installs chromium first (Makefile target `browser`). Without it the test skips
and says why, except under CI, where a missing browser is a failure: the browser test must
not quietly stop running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.report import build_report

FIX = Path(__file__).parent / "fixtures" / "report"
CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 2000
# Background colours of the report's pass cells and of its header band (report.html.j2).
PASS_RGB = (0xD9, 0xF2, 0xDF)
# Without the background-networking flags Chromium tries to reach Google's services at
# start-up; the report must render with no network at all.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def chromium() -> str:
    exe = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if exe:
        return exe
    reason = "chromium is not installed (`make browser` installs Debian's package as root)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test")
    pytest.skip(reason)


def screenshot(html: Path, png: Path, profile: Path) -> np.ndarray:
    from PIL import Image

    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
           f"--window-size={WIDTH},{HEIGHT}", html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}):\n" + \
        proc.stderr[-2000:]
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    html, _ = build_report([FIX / "full" / "verify-cpu", FIX / "full" / "verify-gpu"],
                           tmp_path / "report", asv_results=FIX / "full" / "asv")
    pixels = screenshot(html, tmp_path / "shot.png", tmp_path / "profile")
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    # Not blank: a page of text, tables and figures varies a lot; a blank or error page
    # is one colour.
    assert pixels.std() > 20, f"screenshot is nearly uniform (std {pixels.std():.1f})"
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of the screenshot is not white"
    # Styled: the inline CSS applied (the correctness matrix's green pass cells show).
    green = (np.abs(pixels - np.array(PASS_RGB)).max(axis=2) <= 6).sum()
    assert green > 2000, f"no pass-cell green in the screenshot ({green} pixels)"
