"""The report opens and renders in a real browser: headless Debian chromium driven by Playwright.

No browser is downloaded: Playwright launches the system's /usr/bin/chromium (``.ci/run`` installs it).
Set ``KURATE_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from kurate.outputs import export
from tests.report_data import make_run_inputs

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SECTIONS = [
    "summary",
    "distances",
    "examples",
    "diversity",
    "embedding",
    "videos",
    "corrupt",
    "provenance",
    "config",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium), as .ci/run does",
)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    inputs = make_run_inputs(tmp / "in", n=48, k=8, videos=True)
    export.export_run(str(tmp / "run"), inputs, {"config_yaml": "input_dir: /data\n", "n_example_images": 6})
    return tmp / "run" / "report.html"


@pytest.mark.parametrize("width", [1280, 480])
def test_report_renders_in_chromium(report_html, tmp_path, width):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("KURATE_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"report-{width}px.png"
    errors: list[str] = []
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url)
            )
            page.goto(report_html.as_uri(), wait_until="load")
            page.screenshot(path=str(shot), full_page=True)
            for sec in SECTIONS:
                assert page.locator(f"section#{sec} h2").is_visible(), sec
            imgs = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(imgs) >= 6 + 12  # 6 plots (examples are thumbnails), 6 removed/kept pairs
            assert [i for i in imgs if not (i[1] and i[2] > 0)] == []
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        finally:
            browser.close()
    assert errors == [] and outside == []
    with Image.open(shot) as im:
        assert im.size[0] == width and im.size[1] > 2000
