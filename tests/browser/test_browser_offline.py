"""Issue 14 in Chromium: nothing is fetched from the internet, tabs stay open after an action,
a sign-in lands on Home, and what a viewer sees (no store path, a Compare page that says why not)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_server import Server
from test_browser import _goto, _idle, _nav, _shoot

pytestmark = pytest.mark.browser

PASSWORD = "correct horse"
PAGES = ["Home", "Upload", "Models", "Predict", "Compare", "Explain", "Monitor", "Admin"]


def _serve(home: Path, tmp: Path, *, auth: str) -> Iterator[Server]:
    server = Server(home, tmp / "streamlit.log", auth=auth)
    try:
        yield server
    finally:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-5000:]


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Sign-in on; root (admin) and vic (viewer); ``iris`` with two versions."""
    from tiny import add_model, softmax_classifier

    from portal import Portal
    from portal.accounts.auth import Auth

    tmp = tmp_path_factory.mktemp("browser-team")
    home = tmp / "home"
    home.mkdir()
    p = Portal.open(home)
    try:
        for name, role in [("root", "admin"), ("vic", "viewer")]:
            Auth(p.registry).add_user(name, role, actor="tests", password=PASSWORD)
        add_model(p, softmax_classifier(), "iris", task="classification")
        add_model(p, softmax_classifier(seed=4), "iris", task="classification")
    finally:
        p.close()
    yield from _serve(home, tmp, auth="on")


@pytest.fixture(scope="module")
def offline_server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo models, single-user (every page, the Admin page included, is open)."""
    tmp = tmp_path_factory.mktemp("browser-offline")
    shutil.copytree(demo_store, tmp / "home", ignore=shutil.ignore_patterns(".demo-complete", "tmp"))
    yield from _serve(tmp / "home", tmp, auth="off")


def _recorded(page: Any) -> list[str]:
    """Every URL the page requests from now on."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def _foreign(urls: list[str], host: str = "127.0.0.1") -> list[str]:
    return [u for u in urls if not u.startswith(("data:", "blob:")) and urlsplit(u).hostname != host]


def _open_tab(page: Any) -> str:
    return str(page.locator('[role="tab"][aria-selected="true"]').inner_text()).strip()


def _sign_in(page: Any, name: str) -> None:
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").wait_for()
    _idle(page)


# -- item 14: offline --------------------------------------------------------------------------
def test_no_page_fetches_anything_from_another_host(offline_server: Server, page: Any, screenshots: Path) -> None:
    urls = _recorded(page)
    _goto(page, offline_server)
    for label in PAGES:
        _nav(page, label)
        if label == "Models":
            for tab in page.get_by_role("tab").all():
                tab.click()
                _idle(page)
    _shoot(page, screenshots, "14-offline-admin")
    assert len(urls) > 20  # the recording works: the app's own scripts, fonts and websocket
    assert any(u.endswith(".woff2") for u in urls)  # the icon font, from the portal's own server
    assert _foreign(urls) == []
    favicon = page.locator('link[rel="shortcut icon"], link[rel="icon"]').first.get_attribute("href")
    assert favicon is not None and favicon.startswith("data:image/svg+xml")


# -- items 10, 12 and 14: an admin's actions, then a viewer at the same browser -----------------
def test_actions_keep_their_tab_and_a_viewer_lands_on_home(team_server: Server, page: Any,
                                                           screenshots: Path) -> None:
    urls = _recorded(page)
    page.goto(team_server.url)
    page.get_by_role("heading", name="Sign in to Model Portal").wait_for()
    _sign_in(page, "root")
    sidebar = page.get_by_test_id("stSidebar")
    assert "Store:" in sidebar.inner_text()  # admins see where the store lives

    _nav(page, "Admin")
    page.get_by_role("tab", name="API tokens").click()
    _idle(page)
    page.get_by_role("textbox", name="Label").fill("ci")
    page.get_by_role("button", name="Create token").click()
    page.get_by_text("copy it now").wait_for()
    _idle(page)
    _shoot(page, screenshots, "14-admin-token-created")
    assert _open_tab(page) == "API tokens"
    assert page.get_by_test_id("stCode").inner_text().strip().startswith("mpt_")
    page.get_by_role("button", name="I have stored it").click()
    _idle(page)
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("Revoked token 1 of root").wait_for()
    _idle(page)
    assert _open_tab(page) == "API tokens"

    _nav(page, "Models")
    page.get_by_role("tab", name="Aliases").click()
    _idle(page)
    page.get_by_role("button", name="Point alias").click()
    page.get_by_text("@production now points at iris:").wait_for()
    _idle(page)
    _shoot(page, screenshots, "14-models-alias-pointed")
    assert _open_tab(page) == "Aliases"
    page.get_by_role("tab", name="Overview").click()  # a click still switches tabs
    _idle(page)
    assert _open_tab(page) == "Overview"

    _nav(page, "Admin")
    sidebar.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Model Portal").wait_for()
    _sign_in(page, "vic")
    page.get_by_role("heading", name="Model Portal", exact=True).wait_for()
    _shoot(page, screenshots, "14-viewer-home")
    assert not page.url.rstrip("/").endswith("/admin")
    assert "vic · viewer" in sidebar.inner_text() and "Store:" not in sidebar.inner_text()

    _nav(page, "Compare")
    reason = "Viewers cannot create variants; ask an admin for the analyst role."
    page.get_by_text(reason).first.wait_for()
    _shoot(page, screenshots, "14-viewer-compare")
    uploads = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    assert uploads.count() == 2 and all(uploads.nth(i).is_disabled() for i in range(2))
    assert page.get_by_role("button", name="Create variants and compare").is_disabled()
    assert not re.search(r"\bpress\b", page.get_by_test_id("stMain").inner_text(), re.IGNORECASE)
    assert _foreign(urls) == []
