"""Fixtures and helpers for the Streamlit tests (AppTest and the browser suite).

Import the fixtures a test module uses (``from ui_fixtures import empty_home``).
The demo store is built once per test session by clicking "Load demo models"
on the Home page (so that button is exercised for real) and copied per test.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "streamlit_app.py"
DEMO_NAMES = {"breast-cancer", "diabetes", "digits", "wine"}
_DEMO_DONE = ".demo-complete"


def onnx_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def digit_png(digit: int = 3, *, size: int = 64) -> bytes:
    """A scan-like digit from scikit-learn's bundled digits: dark ink on white, ``size`` pixels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    index = int(np.flatnonzero(data.target == digit)[0])
    pixels = (255 - data.images[index] / 16.0 * 255).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- AppTest helpers -----------------------------------------------------------------
def new_app(page: str | None = None, *, timeout: float = 120) -> AppTest:
    """The app, run once (on ``page`` if given, e.g. ``"app_pages/upload.py"``)."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def button(at: AppTest, label: str) -> Any:
    """The button whose label starts with ``label`` (plain or form submit)."""
    for widget in [*at.button, *at.form_submit_button]:
        if widget.label.startswith(label):
            return widget
    raise AssertionError(f"no button {label!r}; buttons: {[b.label for b in at.button]}")


def widget(widgets: Any, label: str) -> Any:
    """The widget of a list (``at.text_input``, ...) whose label is ``label``."""
    for item in widgets:
        if item.label == label:
            return item
    raise AssertionError(f"no widget {label!r}; labels: {[w.label for w in widgets]}")


def texts(elements: Any) -> list[str]:
    return [e.value for e in elements]


def assert_clean(at: AppTest) -> None:
    """No uncaught exception on the page."""
    assert not at.exception, [e.value for e in at.exception]


def select_model(at: AppTest, name: str, version: str = "latest") -> AppTest:
    at.selectbox(key="picker.model").select(name)
    at.run()
    at.selectbox(key=f"picker.version.{name}").select(version)
    return at.run()


def elements_of_type(at: AppTest, kind: str) -> list[Any]:
    """Unnamed elements (e.g. ``"plotly_chart"``) anywhere on the page."""
    found = []

    def walk(node: Any) -> None:
        if getattr(node, "type", None) == kind:
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


# -- stores ------------------------------------------------------------------------
def _use_home(home: Path, monkeypatch: pytest.MonkeyPatch, *, auth: str = "off") -> None:
    """Point the app at ``home``; tests not about accounts run in single-user mode (PORTAL_AUTH=off)."""
    monkeypatch.setenv("PORTAL_HOME", str(home))
    monkeypatch.setenv("PORTAL_AUTH", auth)
    st.cache_resource.clear()


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PORTAL_HOME pointing at a new, empty store."""
    home = tmp_path / "home"
    home.mkdir()
    _use_home(home, monkeypatch)
    yield home
    st.cache_resource.clear()


def build_demo_store(home: Path) -> None:
    """Register the demo models into ``home`` through the Home page's button."""
    at = new_app()
    assert "No models yet" in " ".join(texts(at.info))
    button(at, "Load demo models").click()
    at.run(timeout=900)
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert "Demo models loaded" in " ".join(texts(at.success))


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the demo models, built once per session (shared across modules)."""
    home = tmp_path_factory.getbasetemp() / "ui-demo-store"
    if not (home / _DEMO_DONE).exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        with pytest.MonkeyPatch.context() as mp:
            _use_home(home, mp)
            try:
                build_demo_store(home)
            finally:
                st.cache_resource.clear()
        (home / _DEMO_DONE).touch()
    return home


@pytest.fixture
def demo_home(demo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PORTAL_HOME pointing at a private copy of the demo store."""
    home = tmp_path / "home"
    shutil.copytree(demo_store, home, ignore=shutil.ignore_patterns(_DEMO_DONE, "tmp"))
    _use_home(home, monkeypatch)
    yield home
    st.cache_resource.clear()


# -- accounts ------------------------------------------------------------------------
FAST_HASHER = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


@pytest.fixture
def accounts_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PORTAL_HOME at a new, empty store with sign-in on (PORTAL_AUTH=on) and cheap argon2 parameters."""
    from argon2 import PasswordHasher

    import portal.accounts.auth

    monkeypatch.setattr(portal.accounts.auth, "default_hasher", lambda: PasswordHasher(**FAST_HASHER))
    home = tmp_path / "home"
    home.mkdir()
    _use_home(home, monkeypatch, auth="on")
    yield home
    st.cache_resource.clear()


def make_user(home: Path, name: str, role: str, *, password: str | None = "correct horse") -> Any:
    """Create user ``name`` (with ``password``) in the store at ``home``; return the ``User``."""
    from portal import Portal
    from portal.accounts.auth import Auth

    p = Portal.open(home)
    try:
        return Auth(p.registry).add_user(name, role, actor="tests", password=password)
    finally:
        p.close()


def signed_in_app(user: Any, page: str | None = None, *, timeout: float = 120) -> AppTest:
    """The app with ``user`` already signed in (the session state the sign-in form leaves behind)."""
    import time

    from portal.ui import keys
    from portal.ui.session import SignedIn

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    now = time.time()
    at.session_state[keys.SIGNED_IN] = SignedIn(user.id, user.name, now, now, user.created_at)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    """Fill in and submit the sign-in form."""
    at.text_input(key="auth.name").set_value(name)
    at.text_input(key="auth.password").set_value(password)
    button(at, "Sign in").click()
    return at.run()
