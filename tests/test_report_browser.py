"""A real browser opens the report from disk: headless Chromium (Debian's `chromium`, which
.ci/run installs when missing) must render it, load every image and log no console message."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scrd.filenames import REPORT_FILE
from scrd.reporting.report_html import CHECK, ERROR_HOOK

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package when it is missing)"
)


def _chromium(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *flags,
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _rendered_body(page: Path, profile: Path) -> tuple[dict[str, str], list[str]]:
    """The attributes the page's own check left on <body>, and the console messages logged."""
    result = _chromium(page, profile, "--dump-dom")
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body is not None, result.stdout[:500]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))), console


@pytest.mark.filterwarnings("ignore:AUROC")  # a 3-iteration model ranks at chance: fine for rendering
def test_the_demos_report_renders_in_chromium(tmp_path, capsys):
    from scrd.cli import main

    demo = tmp_path / "demo"  # the README's first command, on tiny settings
    assert main(["demo", "--out", str(demo), "--iterations", "3", "--n-train", "16", "--n-test", "4"]) == 0
    page = tmp_path / REPORT_FILE
    assert main(["report", str(demo / "run"), "--eval", str(demo / "evaluation"), "--out", str(page)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(page))
    attributes, console = _rendered_body(page, tmp_path / "profile")
    assert console == []
    assert attributes["data-check"] == "ok", attributes
    assert int(attributes["data-images"]) == page.read_text().count("<img ") >= 4
    assert attributes["data-images-failed"] == "0" and attributes["data-errors"] == "0"

    shot = tmp_path / "shot.png"
    _chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1280)
    assert (pixels < 200).mean() > 0.02 and pixels.std() > 10  # text and figures, not a blank page


def test_the_pages_check_catches_a_broken_image_and_a_script_error(tmp_path):
    # the same check on a page that is broken on purpose: so a passing check above means something
    page = tmp_path / "broken.html"
    page.write_text(
        f"<html><head><script>{ERROR_HOOK}</script></head><body data-check='pending'>"
        f"<img src='missing.png'><script>not_defined();</script><script>{CHECK}</script></body></html>"
    )
    attributes, console = _rendered_body(page, tmp_path / "profile")
    assert attributes["data-check"] == "failed"
    assert (attributes["data-images-failed"], attributes["data-errors"]) == ("1", "1")
    assert any("not_defined" in line for line in console)
