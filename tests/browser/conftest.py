"""A real ``streamlit run`` server and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from browser_server import Server  # noqa: E402
from ui_fixtures import REPO, demo_store  # noqa: E402,F401  (fixture)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]
SCREENSHOTS = REPO / "test-output" / "screenshots"
VIEWPORT = {"width": 1440, "height": 2400}  # tall: full_page screenshots do not scroll Streamlit's container


def _start(home: Path, tmp: Path, *, auth: str = "off") -> Iterator[Server]:
    server = Server(home, tmp / "streamlit.log", auth=auth)
    try:
        yield server
    finally:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-5000:]


@pytest.fixture(scope="module")
def demo_server(demo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser-demo")
    home = tmp / "home"
    shutil.copytree(demo_store, home, ignore=shutil.ignore_patterns(".demo-complete", "tmp"))
    yield from _start(home, tmp)


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser-empty")
    (tmp / "home").mkdir()
    yield from _start(tmp / "home", tmp)


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Sign-in on (PORTAL_AUTH=on), users root (admin) and ana (analyst) with the password "correct horse"."""
    from portal import Portal
    from portal.accounts.auth import Auth

    tmp = tmp_path_factory.mktemp("browser-accounts")
    home = tmp / "home"
    home.mkdir()
    p = Portal.open(home)
    try:
        for name, role in [("root", "admin"), ("ana", "analyst")]:
            Auth(p.registry).add_user(name, role, actor="tests", password="correct horse")
    finally:
        p.close()
    yield from _start(home, tmp, auth="on")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)  # type: ignore[attr-defined]
    context.set_default_timeout(90_000)  # sandboxed conversion of an upload takes seconds on 2 cores
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
