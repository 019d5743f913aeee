"""report.html renders in headless Chromium: a screenshot that is not blank, and a DOM with the
expected tables and embedded images. Skips where Debian's ``chromium`` package is not installed
(.ci/run installs it)."""

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report import mixed_report  # noqa: F401 (a fixture, built once per session)

CHROMIUM = Path("/usr/bin/chromium")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium to run the HTML rendering test")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    env = {**os.environ, "HOME": str(tmp_path)}  # keep Chromium's caches out of the real home
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.images: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("id", ""))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "tr":
            self.rows += 1


@pytest.fixture
def report(mixed_report, tmp_path):  # noqa: F811 (the imported fixture)
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium to run the HTML rendering test")
    # Opened from elsewhere, away from its PNGs: everything it shows is inside the one file.
    page = tmp_path / "elsewhere" / "report.html"
    page.parent.mkdir()
    shutil.copy(mixed_report / "report.html", page)
    return page


def test_report_dom_has_tables_and_embedded_images(report, mixed_report, tmp_path):  # noqa: F811
    result = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    page = _Page()
    page.feed(result.stdout)
    assert {"leaderboard-skin", "leaderboard-natural", "significance", "per-distortion"} <= set(page.tables)
    figures = list((mixed_report / "figures").glob("*.png"))  # every figure embedded, the transfer forest plot among them
    assert len(page.images) == len(figures) >= 6 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.rows > 20
    assert "musiq @ -" in result.stdout and "failed: stub failure on purpose" in result.stdout


def test_report_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # text, tables and figures, not one flat colour
    white = {rgb: count for count, rgb in colours}.get((255, 255, 255), 0)
    assert white < 0.95 * image.size[0] * image.size[1]
