"""The Admin page: users, API tokens (shown once, revocable) and the audit log with literal filters and CSV."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pytest
from ui_fixtures import (  # noqa: F401  (fixtures)
    accounts_home,
    assert_clean,
    button,
    make_user,
    signed_in_app,
    texts,
    widget,
)

from portal import Portal
from portal.accounts.auth import Auth
from portal.errors import AuthenticationError
from portal.ui.audit import audit_csv, find_events


@pytest.fixture
def admin_app(accounts_home: Path):
    root = make_user(accounts_home, "root", "admin")
    make_user(accounts_home, "ana", "analyst")
    return signed_in_app(root, "app_pages/admin.py")


def _store() -> tuple[Portal, Auth]:
    p = Portal.open(Path(os.environ["PORTAL_HOME"]))
    return p, Auth(p.registry)


def _users_table(at) -> dict[str, tuple[str, str]]:
    frame = at.dataframe[0].value
    return {row.User: (row.Role, row.State) for row in frame.itertuples()}


def test_admin_creates_a_user_who_can_then_sign_in(admin_app) -> None:
    at = admin_app
    at.text_input(key="admin.new.name").set_value("vic")
    at.selectbox(key="admin.new.role").select("viewer")
    at.text_input(key="admin.new.password").set_value("vic's secret")
    button(at, "Create user").click()
    at.run()
    assert_clean(at)
    assert texts(at.success) == ["Created the viewer vic."]
    assert _users_table(at)["vic"] == ("viewer", "active")
    p, store = _store()
    try:
        assert store.sign_in("vic", "vic's secret").role == "viewer"
        assert ("root", "user.create", "vic") in [(e.actor, e.action, e.target) for e in p.registry.audit_log()]
    finally:
        p.close()


@pytest.mark.parametrize(("name", "message"), [
    ("", "invalid user name"), ("a\tb", "invalid user name"), ("ana", "already exists"),
])
def test_bad_new_user_names_are_refused_with_a_message(admin_app, name: str, message: str) -> None:
    at = admin_app
    at.text_input(key="admin.new.name").set_value(name)
    button(at, "Create user").click()
    at.run()
    assert_clean(at)
    assert message in " ".join(texts(at.error))


def test_admin_changes_role_disables_and_resets_a_password(admin_app) -> None:
    at = admin_app
    at.selectbox(key="admin.edit.user").select("ana")
    at.run()
    at.selectbox(key="admin.edit.role.ana").select("viewer")
    at.run()
    button(at, "Save role").click()
    at.run()
    assert _users_table(at)["ana"] == ("viewer", "active")
    button(at, "Disable").click()
    at.run()
    assert _users_table(at)["ana"] == ("viewer", "disabled")
    button(at, "Enable").click()
    at.run()
    at.text_input(key="admin.edit.password").set_value("a new password")
    button(at, "Reset password").click()
    at.run()
    assert_clean(at)
    assert texts(at.success) == ["Set a new password for ana; tell them through a safe channel."]
    p, store = _store()
    try:
        assert store.sign_in("ana", "a new password").name == "ana"
        actions = [e.action for e in p.registry.audit_log(actor="root", target="ana")]
        assert actions[:4] == ["user.password", "user.update", "user.update", "user.update"]
    finally:
        p.close()


def test_a_token_secret_is_shown_once_and_revocation_stops_it(admin_app) -> None:
    at = admin_app
    at.selectbox(key="admin.token.user").select("ana")
    at.text_input(key="admin.token.label").set_value("laptop")
    button(at, "Create token").click()
    at.run()
    assert_clean(at)
    (secret,) = [c.value for c in at.code]
    assert secret.startswith("mpt_") and "shown only this once" in texts(at.warning)[0]
    p, store = _store()
    try:
        assert store.authenticate(secret).name == "ana"
        button(at, "I have stored it").click()
        at.run()
        assert not at.code and "admin.new_secret" not in at.session_state
        button(at, "Revoke").click()
        at.run()
        assert_clean(at)
        assert texts(at.success)[0].startswith("Revoked token")
        with pytest.raises(AuthenticationError, match="revoked"):
            store.authenticate(secret)
        assert [e.action for e in p.registry.audit_log(actor="root", target="ana")][:2] == ["token.revoke",
                                                                                          "token.create"]
    finally:
        p.close()


def test_audit_filters_are_literal(admin_app) -> None:
    p, _ = _store()
    try:
        for target in ["m%'_x", "mA'Bx", "m%'_x:2", "m%'_x@prod", "m%'_xy"]:
            p.registry.record("tests", "model.update", target)
        p.registry.record("%", "model.update", "other")
    finally:
        p.close()
    at = admin_app
    at.tabs  # noqa: B018  (the audit tab is rendered with the others)
    widget(at.text_input, "Model").set_value("m%'_x")
    at.run()
    assert_clean(at)
    assert sorted(at.dataframe[-1].value["Target"]) == ["m%'_x", "m%'_x:2", "m%'_x@prod"]
    widget(at.text_input, "Model").set_value("")
    widget(at.text_input, "Who").set_value("%")
    at.run()
    assert at.dataframe[-1].value["Target"].tolist() == ["other"]
    widget(at.text_input, "Who").set_value("_")
    at.run()
    assert at.dataframe[-1].value.empty


def test_audit_csv_escapes_formulas(accounts_home: Path) -> None:
    p = Portal.open(accounts_home)
    try:
        p.registry.record("=HYPERLINK(\"http://x\")", "signin.fail", "+cmd|' /C calc'!A0", {"reason": "@SUM(1)"})
        frame = pd.read_csv(io.BytesIO(audit_csv(find_events(p.registry))))
    finally:
        p.close()
    row = frame.iloc[0]
    assert row["Who"] == "'=HYPERLINK(\"http://x\")" and row["Target"] == "'+cmd|' /C calc'!A0"
    assert row["What"] == "signin.fail" and row["Detail"] == "reason=@SUM(1)"


def _open_tab(at) -> str:
    """The Admin tab the server tells the browser to show."""
    block = at.get_by_key("admin.tab")
    return [tab.label for tab in block.children.values()][block.proto.tab_container.default_tab_index]


def test_creating_and_revoking_a_token_keeps_the_tokens_tab_open(admin_app) -> None:
    at = admin_app
    assert _open_tab(at) == "Users"
    at.session_state["admin.tab"] = "API tokens"  # what a click on the tab sends
    at.run()
    at.text_input(key="admin.token.label").set_value("ci")
    button(at, "Create token").click()
    at.run()
    assert_clean(at)
    assert _open_tab(at) == "API tokens"  # where the one-time secret is shown
    assert [c.value[:4] for c in at.code] == ["mpt_"]
    button(at, "I have stored it").click()
    at.run()
    button(at, "Revoke").click()
    at.run()
    assert texts(at.success)[0].startswith("Revoked token")  # a flash above the tabs ...
    assert _open_tab(at) == "API tokens"  # ... does not reopen the first tab


def test_a_token_never_used_reads_never(admin_app) -> None:
    at = admin_app
    at.text_input(key="admin.token.label").set_value("ci")
    button(at, "Create token").click()
    at.run()
    (secret,) = [c.value for c in at.code]
    tokens = at.dataframe[1].value
    assert list(tokens["Last used"]) == ["never"]
    p, store = _store()
    try:
        store.authenticate(secret)
    finally:
        p.close()
    at.run()
    (used,) = at.dataframe[1].value["Last used"]
    assert used != "never" and pd.Timestamp(used).year >= 2024
