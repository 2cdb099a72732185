"""The Explain page's LIME views in a real Chromium: one row, SHAP vs LIME, and an image; with screenshots.

Run with ``pytest -m browser tests/browser/test_browser_lime.py`` (needs Debian's ``chromium``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from browser_server import Server
from test_browser import _goto, _idle, _nav, _pick_model, _shoot

pytestmark = pytest.mark.browser


def _explain_with_lime(page: Any, server: Server, model: str) -> None:
    """The Explain page for ``model`` with LIME chosen."""
    _goto(page, server)
    _nav(page, "Explain")
    _pick_model(page, model, heading="Explain")
    page.get_by_text(f"Why {model}:1 answers what it does").wait_for()
    page.get_by_test_id("stRadio").filter(has_text="Method").get_by_text("LIME", exact=True).click()
    _idle(page)


def _metric(page: Any, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label,
                                                                                                     exact=True))
    return str(metric.get_by_test_id("stMetricValue").first.inner_text()).strip()


def test_lime_one_row_and_the_agreement_view(demo_server: Server, page: Any, screenshots: Path) -> None:
    _explain_with_lime(page, demo_server, "breast-cancer")
    row = page.get_by_label("Row", exact=True).first
    row.fill("3")  # row 0 is explained at once by the what-if tab
    row.press("Enter")
    _idle(page)
    page.get_by_text(re.compile(r"^Estimate: lime explainer: 1 row\(s\) × 5,000 evaluations")).wait_for()
    page.get_by_role("button", name="Explain this row with LIME").click()
    page.get_by_text("LIME surrogate", exact=True).first.wait_for()
    _idle(page)
    assert 0.0 <= float(_metric(page, "Local R²")) <= 1.0
    page.locator(".js-plotly-plot").filter(has_text="LIME for row 3").first.wait_for()
    _shoot(page, screenshots, "lime-01-one-row")

    page.get_by_role("tab", name="SHAP vs LIME").click()
    page.get_by_role("button", name="Compare SHAP and LIME").click()
    page.get_by_text("What disagreement means.").wait_for(timeout=240_000)  # shap compiles on the first run
    _idle(page)
    page.get_by_text(re.compile(r"^SHAP and LIME disagree most on row \d+")).wait_for()
    for label in ("Rank correlation (mean per row)", "Rank correlation (global)"):
        assert -1.0 <= float(_metric(page, label)) <= 1.0
    assert 0.0 <= float(_metric(page, "Top-5 overlap (mean per row)")) <= 1.0
    page.locator(".js-plotly-plot").filter(has_text="where they disagree most").first.wait_for()
    page.locator(".js-plotly-plot").filter(has_text="LIME contribution").first.wait_for()
    _shoot(page, screenshots, "lime-02-agreement")


def test_lime_superpixels_of_a_digit(demo_server: Server, page: Any, screenshots: Path) -> None:
    _explain_with_lime(page, demo_server, "digits")
    page.get_by_role("button", name="Explain the image(s) with LIME").click()
    page.get_by_text(re.compile(r"^LIME: 1,000 samples per image")).wait_for()
    _idle(page)
    page.locator(".js-plotly-plot").filter(has_text="LIME superpixel weights").first.wait_for()
    _shoot(page, screenshots, "lime-03-image")
