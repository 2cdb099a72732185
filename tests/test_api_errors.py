"""The error path, in process: a real bug is a JSON 500 with a request id, never a trace; a sign-in
lockout is a 429 that says when to retry; the error tree documented in :mod:`portal.errors` is the code's."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from argon2 import PasswordHasher

import portal.errors
from portal import Portal
from portal.accounts.auth import Auth
from portal.api import ApiSettings, create_app


@pytest.fixture()
def app(tmp_path):
    portal = Portal.open(tmp_path / "home")
    app = create_app(portal, settings=ApiSettings())

    def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", broken)
    yield app
    portal.close()


def test_an_unexpected_exception_is_a_json_500_with_the_request_id(app, caplog):
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom", headers={"X-Request-ID": "abc-123"})

    logging.getLogger("portal.api").propagate = True  # configure_logging() may have turned it off
    with caplog.at_level(logging.ERROR, logger="portal.api"):
        response = asyncio.run(call())
    assert response.status_code == 500
    assert response.json() == {"error": "internal error, see server log (request id abc-123)"}
    assert "secret internals" not in response.text
    assert "abc-123" in caplog.text and "RuntimeError: secret internals" in caplog.text


def _get(app, *paths: str) -> list[httpx.Response]:
    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(call())


def test_a_locked_out_sign_in_is_429_with_retry_after_in_whole_seconds(tmp_path):
    portal = Portal.open(tmp_path / "home")
    auth = Auth(portal.registry, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    auth.add_user("ana", "viewer", actor="test", password="correct horse")
    app = create_app(portal, settings=ApiSettings())

    def sign_in(password: str) -> dict[str, str]:
        return {"user": auth.sign_in("ana", password, source="api").name}

    app.add_api_route("/sign-in", sign_in)
    try:
        *wrong, locked = _get(app, *["/sign-in?password=wrong-one"] * 3, "/sign-in?password=correct horse")
    finally:
        portal.close()
    assert [r.status_code for r in wrong] == [401] * 3
    assert all(r.headers["WWW-Authenticate"] == "Bearer" for r in wrong)
    # three free failures, then 2 s from the last one: what sign_in itself says, rounded up
    assert locked.status_code == 429
    assert locked.json() == {"error": "too many failed sign-ins for ana; try again in 2 s"}
    assert locked.headers["Retry-After"] == "2"
    assert "WWW-Authenticate" not in locked.headers


def test_the_error_tree_in_the_docstring_is_the_code():
    documented, parents = {}, []
    for line in portal.errors.__doc__.splitlines():
        match = re.match(r"^\s{4}([│├└─ ]*)(\w+Error) \((\d{3})\)", line)
        if match:
            depth = len(match[1]) // 4
            parents[depth:] = [match[2]]
            documented[match[2]] = (parents[depth - 1] if depth else None, int(match[3]))
    classes = {name: getattr(portal.errors, name) for name in portal.errors.__all__}
    actual = {name: (next((b.__name__ for b in cls.__bases__ if b.__name__ in classes), None), cls.status)
              for name, cls in classes.items()}
    assert documented == actual
