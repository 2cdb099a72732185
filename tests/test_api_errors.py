"""The last-resort error path, in process: a real bug is a JSON 500 with a request id, never a trace."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from portal import Portal
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
