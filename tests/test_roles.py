"""The same role rules through every door: the library (``portal.as_user``), the CLI (a token) and the REST API.

Each (door, user) pair acts on its own private model owned by the analyst bob,
so a delete allowed in one cell cannot change the outcome of another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_fixtures import REPO, serve
from tiny import add_model, save, softmax_classifier
from typer.testing import CliRunner

from portal import Portal
from portal.accounts.auth import Auth
from portal.errors import PortalError

USERS = {"viewer": "vic", "analyst": "ana", "owner": "bob", "admin": "root"}
DOORS = ("library", "cli", "api")
ACTIONS = ("list", "predict", "upload", "alias", "edit", "delete")
ROW = {"x": [[0.1, 0.2, 0.3, 0.4]]}

# who may do what to a private model of bob's (False: refused, or not even visible)
EXPECTED = {
    "viewer": {"list": False, "predict": False, "upload": False, "alias": False, "edit": False, "delete": False},
    "analyst": {"list": False, "predict": False, "upload": False, "alias": False, "edit": False, "delete": False},
    "owner": {a: True for a in ACTIONS},
    "admin": {a: True for a in ACTIONS},
}


def _model(door: str, who: str) -> str:
    return f"secret-{door}-{who}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("roles") / "home"
    home.mkdir()
    p = Portal.open(home)
    store = Auth(p.registry)
    users = {who: store.add_user(name, "admin" if who == "admin" else "viewer" if who == "viewer" else "analyst",
                                 actor="tests") for who, name in USERS.items()}
    tokens = {who: store.create_token(u.name, actor="tests").secret for who, u in users.items()}
    for door in DOORS:
        for who in USERS:
            name = _model(door, who)
            add_model(p, softmax_classifier(), name, task="classification")
            p.registry.update_model(name, actor="tests", owner="bob", visibility="private")
    upload = save(softmax_classifier(seed=5), home.parent / "next.onnx")
    rows = home.parent / "rows.csv"
    rows.write_text("x_0,x_1,x_2,x_3\n0.1,0.2,0.3,0.4\n")
    yield {"home": home, "portal": p, "users": users, "tokens": tokens, "upload": upload, "rows": rows}
    p.close()


@pytest.fixture(scope="module")
def api(world: dict[str, Any]) -> Iterator[Any]:
    yield from serve(world["home"])


def _library(world: dict[str, Any], who: str, action: str) -> bool:
    p = world["portal"].as_user(world["users"][who], source="library")
    name = _model("library", who)
    try:
        if action == "list":
            return name in [m.name for m in p.list_models()]
        {
            "predict": lambda: p.predict(name, {"x": [ROW["x"][0]]}),
            "upload": lambda: p.register(world["upload"], name),
            "alias": lambda: p.set_alias(f"{name}:1", "prod"),
            "edit": lambda: p.update_model(name, description="edited"),
            "delete": lambda: p.delete(name, force=True),
        }[action]()
    except PortalError:
        return False
    return True


def _cli(world: dict[str, Any], who: str, action: str) -> bool | None:
    from portal.cli import app

    name = _model("cli", who)
    args = {
        "list": ["list", "--json"],
        "predict": ["predict", name, "--input", str(world["rows"]), "--json"],
        "upload": ["register", str(world["upload"]), "--name", name],
        "alias": ["alias", f"{name}:1", "prod"],
        "edit": ["edit", name, "--description", "edited"],
        "delete": ["delete", name, "--yes", "--force"],
    }[action]
    env = {"PORTAL_HOME": str(world["home"]), "PORTAL_TOKEN": world["tokens"][who]}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    if action == "list":
        return name in [m["name"] for m in json.loads(result.stdout)]
    return result.exit_code == 0


def _api(api: Any, world: dict[str, Any], who: str, action: str) -> bool:
    name = _model("api", who)
    with httpx.Client(base_url=api.url, timeout=60,
                      headers={"Authorization": f"Bearer {world['tokens'][who]}"}) as client:
        if action == "list":
            return name in [m["name"] for m in client.get("/api/models").json()]
        if action == "upload":
            with open(world["upload"], "rb") as f:
                response = client.post("/api/models", files={"file": ("next.onnx", f)}, data={"name": name})
        else:
            response = {
                "predict": lambda: client.post(f"/api/models/{name}/predict", json=[{"x_0": 0.1, "x_1": 0.2,
                                                                                    "x_2": 0.3, "x_3": 0.4}]),
                "alias": lambda: client.put(f"/api/models/{name}/aliases/prod", json={"version": 1}),
                "edit": lambda: client.patch(f"/api/models/{name}", json={"description": "edited"}),
                "delete": lambda: client.delete(f"/api/models/{name}", params={"force": "true"}),
            }[action]()
    assert response.status_code in (200, 201, 403, 404), (action, response.status_code, response.text)
    return response.status_code < 300


@pytest.mark.parametrize("who", list(USERS))
def test_every_door_gives_the_same_answer(world: dict[str, Any], api: Any, who: str) -> None:
    outcomes = {door: {} for door in DOORS}
    for action in ACTIONS:  # in this order: the delete comes last
        outcomes["library"][action] = _library(world, who, action)
        outcomes["cli"][action] = _cli(world, who, action)
        outcomes["api"][action] = _api(api, world, who, action)
    assert outcomes["library"] == EXPECTED[who]
    assert outcomes["api"] == EXPECTED[who]
    assert outcomes["cli"] == EXPECTED[who]


def test_the_real_cli_binary_acts_as_the_token_user(world: dict[str, Any]) -> None:
    env = {**os.environ, "PORTAL_HOME": str(world["home"]), "PORTAL_TOKEN": world["tokens"]["analyst"]}
    command = [sys.executable, "-m", "portal.cli", "alias", f"{_model('api', 'owner')}:1", "prod"]
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "no model named" in refused.stderr
    env["PORTAL_TOKEN"] = "mpt_revoked-or-made-up"
    bad = subprocess.run([sys.executable, "-m", "portal.cli", "list"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "invalid or revoked token" in bad.stderr


def test_a_revoked_token_stops_working_on_every_door(world: dict[str, Any], api: Any) -> None:
    from portal.cli import app

    store = Auth(world["portal"].registry)
    token = store.create_token("ana", actor="tests", label="short-lived")
    store.revoke_token(token.info.id, actor="tests")
    result = CliRunner().invoke(app, ["list"], env={"PORTAL_HOME": str(world["home"]), "PORTAL_TOKEN": token.secret})
    assert result.exit_code == 1 and "invalid or revoked token" in result.output
    response = httpx.get(f"{api.url}/api/models", headers={"Authorization": f"Bearer {token.secret}"})
    assert response.status_code == 401
