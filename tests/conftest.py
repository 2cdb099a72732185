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


# -- hypothesis profiles (tests/test_fuzz.py): HYPOTHESIS_PROFILE=ci (default) or long --------------
import os as _os  # noqa: E402

from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None)
_hypothesis_settings.register_profile("long", max_examples=20_000, deadline=None)
_hypothesis_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "ci"))
