"""Holes found by the attacker review (issue 13), each pinned over real HTTP.

One ``portal serve`` on 127.0.0.1 with a concurrency limit of 4 and a body
timeout of 2 s.  Slow clients are raw sockets that send the headers of a
100-byte body and then one byte of it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_fixtures import Server, Tokens, add_model, iris_model, make_users, serve
from portal import Portal
from portal.errors import InvalidNameError
from portal.storage.refs import ModelRef

LIMIT = 4
BODY_TIMEOUT_S = 2
QUICK = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Portal, Tokens, Server]]:
    home = tmp_path_factory.mktemp("security-home")
    portal = Portal.open(home)
    tokens = make_users(portal)
    add_model(portal, "iris", iris_model(), owner="analyst")
    add_model(portal, "secret-plans", iris_model(), owner="admin")
    portal.registry.update_model("secret-plans", actor="test", visibility="private")
    add_model(portal, "analysts-draft", iris_model(), owner="analyst")
    portal.registry.update_model("analysts-draft", actor="test", visibility="private")
    env = {"PORTAL_API_MAX_CONCURRENCY": str(LIMIT), "PORTAL_API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    for server in serve(home, env=env):
        yield portal, tokens, server
    portal.close()


def _client(world: tuple[Portal, Tokens, Server], who: str | None) -> httpx.Client:
    _, tokens, server = world
    return httpx.Client(base_url=server.url, headers=tokens.headers(who), timeout=30)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and "Traceback" not in response.text
    return str(response.json()["error"])


# -- 1. slow bodies ---------------------------------------------------------------------------------
def _slow_request(server: Server, headers: dict[str, str]) -> socket.socket:
    """Send an infer request's headers announcing 100 bytes, then only the first byte."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)  # a guard against hanging, not a check
    lines = ["POST /v2/models/iris/infer HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             "Content-Length: 100", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"{")
    return sock


def _answer(sock: socket.socket) -> tuple[int, http.client.HTTPMessage, dict[str, Any]]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.headers, json.loads(response.read())


def _poll_status(client: httpx.Client, want: int, *, timeout: float = 30) -> None:
    """Repeat a cheap authenticated request until it answers ``want``."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        seen.append(client.get("/v2/models/iris").status_code)
        if seen[-1] == want:
            return
    raise AssertionError(f"never answered {want}; answered {sorted(set(seen))}")


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-real-token"], ids=["no-token", "bad-token"])
def test_unauthenticated_slow_bodies_get_401_without_taking_a_slot(world, authorization):
    _, _, server = world
    headers = {"Authorization": authorization} if authorization else {}
    socks = [_slow_request(server, headers) for _ in range(3 * LIMIT)]
    try:
        for sock in socks:  # answered from the headers alone, and the connection is closed
            status, response_headers, body = _answer(sock)
            assert status == 401 and set(body) == {"error"}
            assert response_headers["www-authenticate"] == "Bearer"
            assert response_headers["connection"] == "close"
            assert sock.recv(1) == b""
        with _client(world, "viewer") as viewer:
            assert viewer.post("/v2/models/iris/infer", json=QUICK).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_slow_body_gets_408_after_the_timeout_and_its_slot_comes_back(world):
    _, tokens, server = world
    socks = [_slow_request(server, tokens.headers("viewer")) for _ in range(LIMIT)]
    try:
        with _client(world, "viewer") as viewer:
            _poll_status(viewer, 503)  # the authenticated slow bodies hold every slot, for now
            for sock in socks:
                status, response_headers, body = _answer(sock)
                assert status == 408, body
                assert "PORTAL_API_BODY_TIMEOUT_S" in body["error"] and f"{BODY_TIMEOUT_S} s" in body["error"]
                assert response_headers["connection"] == "close"
            _poll_status(viewer, 200)
            assert viewer.post("/v2/models/iris/infer", json=QUICK).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_health_needs_no_token_and_metrics_needs_one(world):
    with _client(world, None) as anonymous:
        assert anonymous.get("/v2/health/ready").status_code == 200
        assert anonymous.get("/v2/health/live").status_code == 200
        assert "missing token" in _error(anonymous.get("/metrics"), 401)


# -- 2. /metrics and private model names -------------------------------------------------------------
def _metrics(world: tuple[Portal, Tokens, Server], who: str) -> str:
    with _client(world, who) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def test_metrics_hide_private_model_names_from_those_who_cannot_see_them(world):
    with _client(world, "admin") as admin:
        for name in ("secret-plans", "analysts-draft", "iris"):
            assert admin.post(f"/v2/models/{name}/infer", json=QUICK).status_code == 200
    viewer = _metrics(world, "viewer")
    assert "secret-plans" not in viewer and "analysts-draft" not in viewer
    assert 'model="iris"' in viewer and 'model="(hidden)"' in viewer
    analyst = _metrics(world, "analyst")  # owns analysts-draft, cannot see secret-plans
    assert "secret-plans" not in analyst and 'model="analysts-draft"' in analyst
    admin_text = _metrics(world, "admin")
    assert 'model="secret-plans"' in admin_text and 'model="analysts-draft"' in admin_text


def test_hidden_series_are_summed_into_one_valid_series(world):
    with _client(world, "admin") as admin:
        for name in ("secret-plans", "analysts-draft"):
            assert admin.post(f"/v2/models/{name}/infer", json=QUICK).status_code == 200
    samples = [(s.name, tuple(sorted(s.labels.items())), s.value)
               for family in text_string_to_metric_families(_metrics(world, "viewer")) for s in family.samples]
    keys = [(name, labels) for name, labels, _ in samples]
    assert len(keys) == len(set(keys)), "a series appears twice"
    hidden = {(name, labels): value for name, labels, value in samples if ("model", "(hidden)") in labels}
    rows = [v for (name, labels), v in hidden.items() if name == "portal_inference_rows_total"]
    assert rows and rows[0] >= 2  # one row from each of the two hidden models, at least


# -- 3. version numbers: ASCII digits only ------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", "/v2/models/iris/versions/%C2%B2"),
    ("GET", "/v2/models/iris/versions/%C2%B2/ready"),
    ("POST", "/v2/models/iris/versions/%C2%B2/infer"),
    ("GET", "/api/models/iris/versions/%C2%B2"),
    ("GET", "/api/models/iris/versions/%D9%A3"),
    ("POST", "/api/models/iris:%C2%B2/predict"),
])
def test_a_unicode_digit_as_version_is_400(world, method, path):
    with _client(world, "viewer") as viewer:
        response = viewer.request(method, path, json=QUICK if method == "POST" else None)
    message = _error(response, 400)
    assert "invalid version" in message and "0-9" in message


@pytest.mark.parametrize("text", ["m:²", "m:٣", "m:３", "m:1²", "m:0", "m:", "m:+3", "m: 3"])
def test_model_ref_refuses_versions_that_are_not_ascii_digits(text):
    with pytest.raises(InvalidNameError, match="invalid version"):
        ModelRef.parse(text)


def test_model_ref_parses_plain_versions():
    assert ModelRef.parse("m:12") == ModelRef("m", version=12)


# -- 4. model names are one namespace ---------------------------------------------------------------
def _upload(world: tuple[Portal, Tokens, Server], who: str, name: str) -> httpx.Response:
    with _client(world, who) as client:
        return client.post("/api/models", data={"name": name},
                           files={"file": ("m.onnx", iris_model().SerializeToString(), "application/octet-stream")})


def test_uploading_to_a_private_name_of_someone_else_says_the_name_is_taken(world):
    message = _error(_upload(world, "analyst", "secret-plans"), 403)
    assert message == "the name 'secret-plans' is taken; pick another name"


def test_the_taken_answer_reveals_nothing_but_existence(world):
    portal, _, _ = world
    hidden = _error(_upload(world, "analyst", "secret-plans"), 403)
    assert "admin" not in hidden and "private" not in hidden
    assert [v.version for v in portal.registry.get_model("secret-plans").versions] == [1]


def _slow_request_to(server: Server, method: str, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    sock.sendall(head.encode() + b"{")
    return sock


def test_every_route_that_needs_a_token_refuses_a_slow_body_from_its_headers(world):
    _, _, server = world
    spec = httpx.get(f"{server.url}/openapi.json").json()
    routes = [(method.upper(), path) for path, operations in spec["paths"].items()
              for method, operation in operations.items() if operation.get("security")]
    assert len(routes) > 20
    for method, template in routes:
        path = template.replace("{ref}", "iris:1").replace("{version}", "1").replace("{token_id}", "1")
        path = path.replace("{alias}", "prod").replace("{name}", "iris")
        sock = _slow_request_to(server, method, path)
        try:
            status, headers, body = _answer(sock)
        finally:
            sock.close()
        assert (status, headers["connection"]) == (401, "close"), (method, template, body)
