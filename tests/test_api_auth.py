"""Access control over real HTTP: every route × no token, each role, a revoked token, a deleted user.

Expected: public routes answer everyone; otherwise no token, a revoked token or
a deleted user's token → 401; a role below the route's → 403; a role that may →
the route's success status.  Routes that change things get a fresh model per
case, so each case starts from the same state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api_fixtures import add_model, iris_model, make_users, serve
from portal import Portal
from portal.accounts.auth import Auth

WHO = ("none", "revoked", "deleted", "viewer", "analyst", "admin")
RANK = {"viewer": 1, "analyst": 2, "admin": 3}
INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
_counter = itertools.count()


@dataclass(frozen=True)
class Case:
    """One route: who may call it, what it answers them, and how to call it."""

    method: str
    path: str  # {model}: a fresh model owned by ``owner``; {user}/{token}: fresh ones
    needs: str | None  # None: public; else the lowest role, or "owner" (analyst owning the model, or admin)
    ok: int = 200
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    owner: str = "analyst"

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + (f" (owner {self.owner})" if "{model}" in self.path else "")


CASES = [
    Case("GET", "/v2", None),
    Case("GET", "/v2/health/live", None),
    Case("GET", "/v2/health/ready", None),
    Case("GET", "/docs", None),
    Case("GET", "/openapi.json", None),
    Case("GET", "/v2/models/{model}", "viewer"),
    Case("GET", "/v2/models/{model}/versions/1", "viewer"),
    Case("GET", "/v2/models/{model}/ready", "viewer"),
    Case("GET", "/v2/models/{model}/versions/1/ready", "viewer"),
    Case("POST", "/v2/models/{model}/infer", "viewer", json=INFER),
    Case("POST", "/v2/models/{model}/versions/1/infer", "viewer", json=INFER),
    Case("POST", "/api/models/{model}:1/predict", "viewer", json=[{"x_0": 1, "x_1": 2, "x_2": 3, "x_3": 4}]),
    Case("GET", "/api/models", "viewer"),
    Case("GET", "/api/models/{model}", "viewer"),
    Case("GET", "/api/models/{model}/versions/1", "viewer"),
    Case("GET", "/api/models/{model}/versions/1/file", "viewer"),
    Case("GET", "/api/me", "viewer"),
    Case("GET", "/metrics", "viewer"),
    # an upload that is not a model: whoever may upload gets past auth to ingest's 415
    Case("POST", "/api/models", "analyst", ok=415, content=b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
         b"filename=\"m.onnx\"\r\n\r\nnot a model at all\r\n--b--\r\n",
         headers={"Content-Type": "multipart/form-data; boundary=b"}),
    *[c for owner in ("analyst", "admin") for c in (
        Case("PATCH", "/api/models/{model}", "owner", json={"description": "new"}, owner=owner),
        Case("PATCH", "/api/models/{model}/versions/1", "owner", json={"notes": "n"}, owner=owner),
        Case("PUT", "/api/models/{model}/aliases/prod", "owner", json={"version": 1}, owner=owner),
        Case("DELETE", "/api/models/{model}/aliases/old", "owner", owner=owner),
        Case("DELETE", "/api/models/{model}/versions/2", "owner", owner=owner),
        Case("DELETE", "/api/models/{model}?force=true", "owner", owner=owner),
    )],
    Case("GET", "/api/users", "admin"),
    Case("POST", "/api/users", "admin", ok=201, json={"name": "{user}", "role": "viewer"}),
    Case("PATCH", "/api/users/{user}", "admin", json={"role": "analyst"}),
    Case("DELETE", "/api/users/{user}", "admin"),
    Case("GET", "/api/tokens", "admin"),
    Case("POST", "/api/tokens", "admin", ok=201, json={"user": "{user}", "label": "x"}),
    Case("DELETE", "/api/tokens/{token}", "admin"),
    Case("GET", "/api/audit", "admin"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("auth-home")
    portal = Portal.open(home)
    tokens = make_users(portal)
    server_iter = serve(home)
    server = next(server_iter)
    yield portal, tokens, server
    next(server_iter, None)
    portal.close()


def _expected(case: Case, who: str) -> int:
    if case.needs is None:
        return case.ok
    if who in ("none", "revoked", "deleted"):
        return 401
    if case.needs == "owner":
        allowed = who == "admin" or (who == "analyst" and case.owner == "analyst")
    else:
        allowed = RANK[who] >= RANK[case.needs]
    return case.ok if allowed else 403


def _fill(case: Case, portal: Portal) -> tuple[str, Any]:
    n = next(_counter)
    names = {"model": f"m{n}", "user": f"u{n}", "token": ""}
    if "{model}" in case.path:
        add_model(portal, names["model"], iris_model(), owner=case.owner)
        portal.set_alias(f"{names['model']}:1", "old", actor="test")
        add_model(portal, names["model"], iris_model(), owner=case.owner)
    auth = Auth(portal.registry)
    if "{user}" in case.path:
        auth.add_user(names["user"], "viewer", actor="test")
    if "{token}" in case.path:
        auth.add_user(names["user"], "viewer", actor="test")
        names["token"] = str(auth.create_token(names["user"], actor="test").info.id)
    if isinstance(case.json, dict) and "{user}" in str(case.json.values()):
        body = {k: v.format(**names) if isinstance(v, str) else v for k, v in case.json.items()}
        if case.path == "/api/tokens":
            auth.add_user(names["user"], "viewer", actor="test")
    else:
        body = case.json
    return case.path.format(**names), body


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_access(world, case, who):
    portal, tokens, server = world
    path, body = _fill(case, portal)
    headers = {**tokens.headers(None if who == "none" else who), **(case.headers or {})}
    response = httpx.request(case.method, server.url + path, json=body, content=case.content, headers=headers, timeout=30)
    want = _expected(case, who)
    assert response.status_code == want, f"{case} as {who}: {response.status_code} {response.text[:300]}"
    if want in (401, 403):
        assert set(response.json()) == {"error"}
    if want == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_matrix_covers_every_route(world):
    _, _, server = world
    spec = httpx.get(f"{server.url}/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    covered = set()
    for case in CASES:
        template = case.path.split("?")[0].replace("{model}:1", "{ref}").replace("{model}", "{name}")
        template = template.replace("/versions/1", "/versions/{version}").replace("/versions/2", "/versions/{version}").replace("/aliases/prod", "/aliases/{alias}")
        template = template.replace("/aliases/old", "/aliases/{alias}").replace("{user}", "{name}")
        template = template.replace("{token}", "{token_id}")
        covered.add((case.method, template))
    assert documented - covered == set()


def test_changes_are_audited_with_the_calling_user(world):
    portal, tokens, server = world
    add_model(portal, "audited", iris_model(), owner="analyst")
    response = httpx.put(f"{server.url}/api/models/audited/aliases/prod", json={"version": 1},
                         headers=tokens.headers("analyst"))
    assert response.status_code == 200
    created = httpx.post(f"{server.url}/api/users", json={"name": "newbie", "role": "viewer"},
                         headers=tokens.headers("admin"))
    assert created.status_code == 201
    events = {(e.actor, e.action, e.target) for e in portal.registry.audit_log(limit=50)}
    assert ("analyst", "alias.set", "audited@prod") in events
    assert ("admin", "user.create", "newbie") in events


def test_token_made_over_the_api_is_shown_once_and_works(world):
    portal, tokens, server = world
    admin = tokens.headers("admin")
    httpx.post(f"{server.url}/api/users", json={"name": "svc", "role": "viewer"}, headers=admin)
    made = httpx.post(f"{server.url}/api/tokens", json={"user": "svc", "label": "ci"}, headers=admin).json()
    secret = made.pop("token")
    assert httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {secret}"}).json()["name"] == "svc"
    listed = httpx.get(f"{server.url}/api/tokens", params={"user": "svc"}, headers=admin).json()
    assert [{**t, "last_used_at": None} for t in listed] == [made] and secret not in str(listed)
    httpx.delete(f"{server.url}/api/tokens/{made['id']}", headers=admin)
    assert httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer x y", "Bearer mpt_" + "a" * 300])
def test_malformed_authorization_headers_are_401(world, header):
    _, _, server = world
    response = httpx.get(f"{server.url}/api/me", headers={"Authorization": header})
    assert response.status_code == 401 and set(response.json()) == {"error"}
