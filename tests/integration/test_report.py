"""The report, opened in headless Chromium (Debian's `chromium`): one rendered chart per question,
the tables under them, provenance, and no script errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batch import gold, report
from tests.helpers.gold import EXPECTED, arrow_tables, write_lake

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gold_lake(spark, tmp_path_factory) -> str:
    lake = str(tmp_path_factory.mktemp("report") / "lake")
    write_lake(lake, arrow_tables())
    gold.run_queries(spark, lake)
    return lake


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip: playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def test_report_renders_one_chart_per_question(gold_lake, browser, tmp_path):
    out = report.write_report(gold_lake, tmp_path / "out" / "report.html")
    text = out.read_text()
    # Self-contained: plotly.js inlined (no script or stylesheet to fetch; the page's requests are checked below).
    assert "<script src" not in text and "<link" not in text
    assert len(text) > 1_000_000

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.resolve().as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 8", timeout=60_000)
    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)

    sections = page.query_selector_all("section.question")
    assert len(sections) == 8
    for number, section in enumerate(sections, 1):
        plots = section.query_selector_all(".js-plotly-plot")
        assert len(plots) == 1, f"question {number}: {len(plots)} charts"
        # Rendered, not just a div: plotly drew marks (bars or line points) in an SVG of real size.
        marks = plots[0].query_selector_all(".bars .point path, .scatterlayer .points path")
        assert marks, f"question {number}: the chart has no bars or points"
        box = plots[0].bounding_box()
        assert box and box["width"] > 300 and box["height"] > 200, f"question {number}: {box}"
        # Every table of the question is under the chart, with the gold table's rows.
        for name in section.get_attribute("data-tables").split():
            table = section.query_selector(f"#table-{name}")
            assert table, f"question {number}: no table {name}"
            assert int(table.get_attribute("data-rows")) == len(EXPECTED[name])
            assert len(table.query_selector_all("tbody tr")) == len(EXPECTED[name])
        assert "computed at" in section.inner_text()
    assert problems == []
    assert [url for url in requests if not url.startswith("file:")] == []

    # Bars match the gold answer: question 1 has one bar per row (ties side by side), question 6 one per year.
    first = sections[0].query_selector_all(".bars .point path")
    assert len(first) == len(EXPECTED["category_by_country"])
    assert len(sections[5].query_selector_all(".bars .point path")) == len(EXPECTED["users_joined_by_year"])
    # Provenance: the versions of the source tables that were read.
    header = page.inner_text("body")
    assert "pin version 0" in header and "geo version 0" in header and "user version 0" in header
    assert screenshot.stat().st_size > 20_000
    page.close()


def test_report_marks_questions_not_computed_yet(gold_lake, tmp_path):
    lake = tmp_path / "partial"
    shutil.copytree(Path(gold_lake) / "gold" / "users_joined_by_year", lake / "gold" / "users_joined_by_year")
    text = report.write_report(str(lake), tmp_path / "partial.html").read_text()
    assert text.count('class="missing"') == 7  # every question but users_joined_by_year
    assert 'id="chart-users_joined_by_year"' in text


def test_report_without_gold_tables_is_a_clear_error(tmp_path):
    with pytest.raises(gold.GoldError, match="no gold tables under .*: run `pinpipe query` first"):
        report.write_report(str(tmp_path / "empty"), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
