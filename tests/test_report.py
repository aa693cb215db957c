"""`bench report`: one self-contained HTML page of the curated results, opened in a real headless
browser (Debian's Chromium, driven through Playwright with the system browser): the tables, the
embedded plots and the per-run sections render, and nothing is requested beyond the file itself."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)


def _browser_or_skip():
    """Playwright and a system Chromium; in CI (CI=true) their absence fails the test (.ci/run installs them)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if CHROMIUM is None:
        missing.append("Chromium (apt-get install chromium)")
    if missing:
        message = "the report's browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--results-dir", str(REPO / "results" / "published"),
                 "--selection", str(REPO / "results" / "selection.json"), "--out", str(path)]) == 0
    return path


def test_the_report_is_self_contained(report):
    html = report.read_text(encoding="utf-8")
    # nothing to fetch: no script, no external stylesheet, image or link (SVG's xmlns is a name, not a request)
    assert "<script" not in html
    assert not re.findall(r'(?:src|href)="(?!#|data:)', html)
    assert "Content-Security-Policy" in html and 'data-table="main"' in html


@pytest.mark.slow
def test_the_report_renders_in_a_headless_browser_without_any_request(report, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    requests = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri())
            main_rows = page.locator("table[data-table=main] tbody tr")
            assert main_rows.count() >= 5  # baselines and generative rows of the main table
            assert "SASRec" in page.locator("table[data-table=main]").inner_text()
            loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
            assert loaded >= 1 and loaded == page.evaluate("document.images.length")  # every plot decoded
            link = main_rows.first.locator("td.runs a").first
            target = link.get_attribute("href")
            section = page.locator(f"section.run{target}")
            assert section.count() == 1  # a row's run links to its section ...
            link.click()
            assert section.is_visible() and "budget" in section.inner_text()  # ... with its budget and config
            assert page.locator("section.run svg").count() >= 1  # learning curves drawn inline
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
    assert requests == [report.as_uri()]  # the file itself and nothing else
