"""The portal's own model runs are not traffic: Explain (SHAP, LIME) and Compare stay out of the Monitor.

One image prediction, then a SHAP and a LIME explanation and a comparison of the same
model: the prediction log holds the one request and its one row, the library's
statistics and the Monitor page (AppTest) show exactly that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from tiny import add_model
from ui_fixtures import assert_clean, empty_home, new_app, select_model  # noqa: F401 (fixture)
from variant_models import tiny_cnn, write_digit_pngs

from portal import Portal
from portal.demo import DIGITS_PREPROCESSING
from portal.explain import ExplainSettings, ImageJob, LimeImageJob
from portal.monitor import stats as mon
from portal.storage.db import PredictionRow
from portal.ui.monitor_panels import ALL_VERSIONS

LABELS = [str(d) for d in range(10)]


@pytest.fixture(autouse=True)
def _no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_WARM_UP", "0")


def _logged(portal: Portal) -> list[tuple[str, int, int, str]]:
    """(model name, version, rows, source) of every row of the prediction log."""
    table = PredictionRow.__table__
    portal.monitor.flush()
    with portal.registry.engine.connect() as conn:
        rows = conn.execute(select(table.c.model_id, table.c.version, table.c.rows, table.c.source)).all()
    names = {portal.get_model(m.name).model_id: m.name for m in portal.registry.list_models()}
    return [(names[model_id], version, count, source) for model_id, version, count, source in rows]


def _predict_explain_compare(home: Path, tmp_path: Path) -> None:
    """One image predicted, then explained by SHAP and LIME, then the model compared with a variant."""
    folder = write_digit_pngs(tmp_path / "digits", count=8)
    png = sorted(folder.glob("*.png"))[0].read_bytes()
    portal = Portal.open(home)
    try:
        add_model(portal, tiny_cnn(), "cnn", task="classification", class_labels=LABELS,
                  preprocessing=dict(DIGITS_PREPROCESSING))
        version = portal.get("cnn")
        prediction = portal.predict(version, portal.images_to_array(version, [png], names=["digit.png"]))
        assert prediction.rows == 1
        settings = ExplainSettings(max_evals=64, top_classes=1, lime_samples=50)
        shap = ImageJob(portal, "cnn:1", [png], settings=settings).run()
        assert shap.model_rows >= 64 and not shap.from_cache  # the explanation ran the model many times
        lime = LimeImageJob(portal, "cnn:1", [png], settings=settings).run()
        assert lime.model_rows >= 50
        comparison = portal.variants.compare("cnn:1", data=folder, methods=["optimized"], budget_seconds=0.3)
        assert comparison.measurements  # the variant was created and measured
        assert _logged(portal) == [("cnn", 1, 1, "library")]
    finally:
        portal.close()


def test_explanations_and_comparisons_are_not_logged_as_traffic(portal_home: Path, tmp_path: Path) -> None:
    _predict_explain_compare(portal_home, tmp_path)
    portal = Portal.open(portal_home)
    try:
        summary = mon.summarize(portal, "cnn", None, mon.TimeRange.last(3600, now=mon.now(portal)))
        assert (summary.requests, summary.rows, summary.errors) == (1, 1, 0)
        assert summary.callers[["source", "requests", "rows"]].values.tolist() == [["library", 1, 1]]
    finally:
        portal.close()


def test_the_monitor_page_counts_the_one_image_prediction(empty_home: Path, tmp_path: Path) -> None:
    _predict_explain_compare(empty_home, tmp_path)
    at = select_model(new_app("app_pages/monitor.py"), "cnn", "v1")
    at.radio(key="monitor.scope").set_value(ALL_VERSIONS)
    at.run()
    assert_clean(at)
    tiles = {m.label: m.value for m in at.metric}
    assert (tiles["Requests"], tiles["Rows"], tiles["Error rate"]) == ("1", "1", "0.0%")
    assert any("are not traffic and are not counted" in c.value for c in at.caption)
