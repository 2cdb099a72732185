"""Shared fixtures: a fresh portal store per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import pg_url, postgres_server  # noqa: E402,F401  (fixtures)


@pytest.fixture
def portal_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def portal(portal_home: Path):
    from portal import Portal

    p = Portal.open(portal_home)
    yield p
    p.close()
