"""The Monitor page in a real Chromium: the metric tiles show their whole values (issue 14 item 8).

Run with ``pytest -m browser`` (needs Debian's ``chromium``; see STACK-NOTES.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_server import Server
from playwright.sync_api import expect
from test_browser import _goto, _nav, _shoot
from tiny import add_model, softmax_classifier

from portal import Portal

pytestmark = pytest.mark.browser

# slow requests and many rows: the longest values the tiles show
LATENCIES_MS = [850.0, 1234.5, 2222.2, 61_500.0]
ROWS = [250_000, 400_000, 350_000, 300_000]
TILES = ["4", "1.3M", "0.0%", "1.73 s", "52.6 s", "100.0%"]  # p50, p95 of the four latencies


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def monitor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser-monitor")
    home = tmp / "home"
    home.mkdir()
    portal = Portal.open(home)
    try:
        add_model(portal, softmax_classifier(), "traffic")
        clock = portal.monitor.clock = Clock(time.time() - 600)
        for ms, rows in zip(LATENCIES_MS, ROWS, strict=True):
            clock.t += 30
            portal.monitor.record("traffic", 1, caller="ann", source="api", rows=rows, latency_s=ms / 1000,
                                  feeds={"x": np.zeros((2, 4), np.float32)}, cache_hit=True)
        portal.monitor.flush()
    finally:
        portal.close()
    server = Server(home, tmp / "streamlit.log")
    try:
        yield server
    finally:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-5000:]


def _cut(page: Any) -> list[str]:
    """The metric values whose text is wider than their box (cut off or ellipsised)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetricValue"]')]
        .filter(v => [v, ...v.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
        .map(v => v.innerText)""")


def test_metric_tiles_show_their_whole_values(monitor_server: Server, page: Any, screenshots: Path) -> None:
    _goto(page, monitor_server)
    _nav(page, "Monitor")
    # polls until the Monitor page has replaced the previous page's tiles (Home has metrics too)
    expect(page.get_by_test_id("stMetricValue")).to_have_text(TILES, timeout=60_000)
    assert _cut(page) == []
    _shoot(page, screenshots, "20-monitor-tiles")
    page.set_viewport_size({"width": 1024, "height": 2400})  # a laptop, sidebar open
    _goto(page, monitor_server)
    _nav(page, "Monitor")
    expect(page.get_by_test_id("stMetricValue")).to_have_text(TILES, timeout=60_000)
    assert _cut(page) == []
    _shoot(page, screenshots, "21-monitor-tiles-narrow")
