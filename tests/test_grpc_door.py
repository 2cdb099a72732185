"""The gRPC door's per-call helpers, without a server: the token cache, request ids and the access-log line.

(The server itself, with the official Triton client, is tested in ``test_grpc.py``.)
"""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from portal import Portal
from portal.accounts.auth import Auth, User
from portal.api.grpc.door import Exchange, RequestIds, finish
from portal.api.grpc.tokencache import TokenCache
from portal.api.guard import access_logger
from portal.errors import AuthenticationError
from portal.storage.db import TokenRow


class CountingAuth:
    """The real ``Auth``, counting the token checks that reach the database."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth
        self.checks = 0

    def authenticate(self, token: str | None) -> User:
        self.checks += 1
        return self.auth.authenticate(token)


@pytest.fixture()
def accounts(tmp_path: Any) -> Any:
    portal = Portal.open(tmp_path)
    auth = Auth(portal.registry)
    auth.add_user("ana", "viewer", actor="test")
    auth.add_user("bo", "viewer", actor="test")
    yield portal, auth
    portal.close()


def test_a_checked_token_is_served_from_the_cache_until_the_database_changes(accounts):
    portal, auth = accounts
    secret = auth.create_token("ana", actor="test").secret
    counting = CountingAuth(auth)
    cache = TokenCache(counting, portal.registry.engine)
    try:
        assert cache.user(secret).name == "ana"
        _wait_for_last_use(portal)  # the first check stamps the token's use from a thread of its own: a commit
        assert [cache.user(secret).name for _ in range(5)] == ["ana"] * 5
        assert counting.checks == 2  # the stamp changed the file once: one more check, then the cache
        auth.create_token("bo", actor="test")  # any commit to the file, by another connection
        assert cache.user(secret).name == "ana"
        assert counting.checks == 3
    finally:
        cache.close()


def test_cached_answers_only_what_was_checked_since_the_last_change(accounts):
    portal, auth = accounts
    token = auth.create_token("ana", actor="test")
    secret = token.secret
    cache = TokenCache(auth, portal.registry.engine)
    try:
        assert cache.cached(secret) is None  # never checked: the door reads the database in a thread
        assert cache.user(secret).name == "ana"
        _wait_for_last_use(portal)
        assert cache.user(secret).name == "ana"  # checked again after the stamp's commit
        user = cache.cached(secret)
        assert user is not None and user.name == "ana"
        assert cache.cached("mpt_not-a-token") is None
        auth.revoke_token(token.info.id, actor="test")
        assert cache.cached(secret) is None  # the file changed: nothing is trusted
        with pytest.raises(AuthenticationError):
            cache.user(secret)
    finally:
        cache.close()


def _wait_for_last_use(portal: Portal, deadline_s: float = 30.0) -> None:
    """Poll (with a deadline, no sleep) until the background stamp of a token's last use is committed."""
    ends = time.monotonic() + deadline_s
    with portal.registry.engine.connect() as conn:
        while conn.execute(select(TokenRow.last_used_at).where(TokenRow.last_used_at.is_not(None))).first() is None:
            assert time.monotonic() < ends, "the token's last use was never stamped"
            conn.rollback()


def test_a_revoked_token_or_a_disabled_user_is_refused_on_the_next_check(accounts, tmp_path):
    portal, auth = accounts
    doomed = auth.create_token("ana", actor="test")
    kept = auth.create_token("bo", actor="test").secret
    cache = TokenCache(auth, portal.registry.engine)
    other = Portal.open(tmp_path)  # another registry, as `portal tokens revoke` in another process
    try:
        assert cache.user(doomed.secret).name == "ana" and cache.user(kept).name == "bo"
        Auth(other.registry).revoke_token(doomed.info.id, actor="test")
        with pytest.raises(AuthenticationError, match="invalid or revoked token"):
            cache.user(doomed.secret)
        assert cache.user(kept).role == "viewer"
        Auth(other.registry).update_user("bo", actor="test", role="analyst")
        assert cache.user(kept).role == "analyst"
        Auth(other.registry).update_user("bo", actor="test", disabled=True)
        with pytest.raises(AuthenticationError, match="user 'bo' is disabled"):
            cache.user(kept)
    finally:
        other.close()
        cache.close()


def test_an_unknown_token_is_refused_every_time(accounts):
    portal, auth = accounts
    counting = CountingAuth(auth)
    cache = TokenCache(counting, portal.registry.engine)
    try:
        for _ in range(2):
            with pytest.raises(AuthenticationError, match="invalid or revoked token"):
                cache.user("mpt_not-a-token")
        assert counting.checks == 2  # failures are never remembered
    finally:
        cache.close()


@pytest.mark.parametrize("url", ["postgresql://portal@db.example/portal", "sqlite://", "sqlite:///:memory:"])
def test_without_a_local_database_file_every_token_is_checked_against_the_database(accounts, url):
    _, auth = accounts
    secret = auth.create_token("ana", actor="test").secret
    counting = CountingAuth(auth)
    engine = SimpleNamespace(url=make_url(url))  # only its address is read: nothing connects to it
    cache = TokenCache(counting, engine)
    assert [cache.user(secret).name for _ in range(3)] == ["ana"] * 3
    assert counting.checks == 3
    cache.close()


def test_request_ids_are_unique_and_sane():
    ids = [RequestIds() for _ in range(2)]
    made = [new() for new in ids for _ in range(1000)]
    assert len(set(made)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)


class FakeMetrics:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def observe_grpc(self, **labels: Any) -> None:
        self.calls.append(labels)


class FakeContext:
    def __init__(self) -> None:
        self.metrics = FakeMetrics()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("peer,user,model,version", [
    ("ipv4:127.0.0.1:5555", "ana", "iris", "2"),
    ('ipv6:[::1]:1 "quoted" \\ back\nslash', "zoë 😀", None, None),
])
def test_the_access_line_is_the_json_of_the_call(peer, user, model, version):
    ex = Exchange("ModelInfer", "r-1", peer, grpc.StatusCode.NOT_FOUND, 120, 0, user, model, version)
    ctx, handler = FakeContext(), Lines()
    level, disabled = access_logger.level, access_logger.disabled
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.disabled = False
    try:
        finish(ctx, ex, 0.0012345)
    finally:
        access_logger.removeHandler(handler)
        access_logger.setLevel(level)
        access_logger.disabled = disabled
    (line,) = handler.lines
    doc = json.loads(line)
    assert doc.pop("ts") > 0
    assert doc == {"request_id": "r-1", "client": peer, "protocol": "grpc", "method": "ModelInfer",
                   "path": "/inference.GRPCInferenceService/ModelInfer", "route": "ModelInfer",
                   "status": "NOT_FOUND", "ms": 1.234, "bytes_in": 120, "bytes_out": 0, "user": user,
                   "model": model, "version": version}
    assert line.isascii() and "\n" not in line  # one line, whatever the names hold
    assert ctx.metrics.calls == [{"method": "ModelInfer", "code": "NOT_FOUND", "seconds": 0.0012345,
                                  "model": model, "version": version}]
