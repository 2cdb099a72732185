"""Sign-in and sign-out in a real Chromium against ``streamlit run`` with PORTAL_AUTH=on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_server import Server
from test_browser import _idle, _nav, _shoot

pytestmark = pytest.mark.browser


def _sign_in(page: Any, name: str, password: str) -> None:
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    _idle(page)


def test_sign_in_wrong_password_admin_page_and_sign_out(accounts_server: Server, page: Any,
                                                        screenshots: Path) -> None:
    page.goto(accounts_server.url)
    page.get_by_role("heading", name="Sign in to Model Portal").wait_for()
    _idle(page)
    _shoot(page, screenshots, "signin")
    _sign_in(page, "root", "not the password")
    page.get_by_text("wrong user name or password").wait_for()
    _sign_in(page, "root", "correct horse")
    page.get_by_role("heading", name="Model Portal", exact=True).wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name="Sign out").wait_for()
    assert "root · admin" in sidebar.inner_text()
    _nav(page, "Admin")
    page.get_by_role("tab", name="Users").wait_for()
    page.get_by_test_id("stDataFrame").first.wait_for()
    _shoot(page, screenshots, "admin")
    sidebar.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
    page.get_by_role("heading", name="Sign in to Model Portal").wait_for()
    assert not page.get_by_test_id("stSidebarNav").is_visible()
