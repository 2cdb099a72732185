"""Schema-driven fuzzing (schemathesis) of the whole OpenAPI description: no request may get a 5xx.

Runs as an admin so that every route is reached past authentication, on a server
of its own.  Revoking tokens is left out (the fuzzer would revoke its own), and
uploads get a budget of their own because each one starts the ingest sandbox.
schemathesis' pytest plugin (``from_fixture``) fails under pytest 9 (it reads
``node._nodeid``), so each operation's hypothesis strategy is driven directly.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from api_fixtures import add_model, iris_model, make_users, serve, text_model
from portal import Portal

FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
FUZZ_UPLOAD = settings(FUZZ, max_examples=8)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-home")
    portal = Portal.open(home)
    try:
        tokens = make_users(portal)
        for name in ("iris", "text"):
            add_model(portal, name, iris_model() if name == "iris" else text_model(), owner="admin")
        portal.set_alias("iris:1", "production", actor="test")
    finally:
        portal.close()
    for server in serve(home, env={"PORTAL_API_MAX_BODY_MB": "1", "PORTAL_MAX_UPLOAD_MB": "1"}):
        yield server, tokens.headers("admin")


def _check(case, fuzz_server, statuses: Counter[int]) -> None:
    server, headers = fuzz_server
    case.headers = {**(case.headers or {}), **headers}
    response = case.call(base_url=server.url, timeout=60)
    statuses[response.status_code] += 1
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    assert "Traceback" not in response.text


def _fuzz(fuzz_server, *, upload: bool, budget: settings) -> None:
    """Run every operation's hypothesis strategy; collect failures, then fail listing them all."""
    server, _ = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        is_upload = operation.label == "POST /api/models"
        if is_upload != upload or operation.label == "DELETE /api/tokens/{token_id}":
            continue
        ran += 1

        @given(case=operation.as_strategy())
        @budget
        def run(case):
            _check(case, fuzz_server, statuses)

        try:
            run()
        except AssertionError as exc:
            failures.append(f"{operation.label}: {exc}")
    assert ran >= (1 if upload else 20)
    assert not failures, "\n".join(failures)
    print(f"fuzzed {ran} operations with {sum(statuses.values())} requests: {dict(sorted(statuses.items()))}")
    assert upload or sum(n for code, n in statuses.items() if code < 300) > 20  # it got past auth and validation


def test_no_request_gets_a_server_error(fuzz_server):
    _fuzz(fuzz_server, upload=False, budget=FUZZ)


def test_no_upload_gets_a_server_error(fuzz_server):
    _fuzz(fuzz_server, upload=True, budget=FUZZ_UPLOAD)


def test_the_fuzzed_server_still_serves(fuzz_server):
    server, headers = fuzz_server
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    assert httpx.post(f"{server.url}/v2/models/iris/versions/1/infer", json=body, headers=headers).status_code == 200
    assert "Traceback" not in server.log()
