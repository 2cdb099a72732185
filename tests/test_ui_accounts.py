"""Sign-in to the browser portal: first admin, sign-in and failures, throttling, expiry, sign-out, lock-out."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_fixtures import (  # noqa: F401  (fixtures)
    accounts_home,
    assert_clean,
    button,
    empty_home,
    make_user,
    new_app,
    sign_in,
    signed_in_app,
    texts,
)

from portal import Portal
from portal.accounts.auth import Auth
from portal.errors import NotFoundError
from portal.ui import session

PASSWORD = "correct horse"


def _audit(home: Path, **filters: str) -> list[tuple[str, str, str, dict]]:
    p = Portal.open(home)
    try:
        return [(e.actor, e.action, e.target, e.detail) for e in p.registry.audit_log(**filters)]
    finally:
        p.close()


def _users(home: Path) -> list[tuple[str, str]]:
    p = Portal.open(home)
    try:
        return [(u.name, u.role) for u in Auth(p.registry).list_users()]
    finally:
        p.close()


def _signed_in_as(at) -> str:
    return " ".join(m.value for m in at.sidebar.markdown)


def _create_first_admin(at, name: str, password: str, again: str | None = None):
    at.text_input(key="auth.first.name").set_value(name)
    at.text_input(key="auth.first.password").set_value(password)
    at.text_input(key="auth.first.again").set_value(password if again is None else again)
    button(at, "Create admin and sign in").click()
    return at.run()


# -- first start -----------------------------------------------------------------------
@pytest.mark.parametrize("page", ["app_pages/upload.py", "app_pages/models.py", "app_pages/admin.py"])
def test_every_page_asks_for_the_first_admin_on_a_store_without_users(accounts_home: Path, page: str) -> None:
    at = new_app(page)
    assert_clean(at)
    assert texts(at.title) == ["Create the first admin account"]
    assert "no accounts yet" in texts(at.info)[0]
    assert not at.file_uploader and not at.dataframe  # no page content behind the form


def test_first_admin_is_created_signed_in_and_audited(accounts_home: Path) -> None:
    at = _create_first_admin(new_app(), "root", PASSWORD)
    assert_clean(at)
    assert texts(at.title) == ["Model Portal"]
    assert "**root** · admin" in _signed_in_as(at)
    assert _users(accounts_home) == [("root", "admin")]
    assert ("root", "user.create", "root") in [e[:3] for e in _audit(accounts_home)]
    # once a user exists, a new browser session gets the sign-in form, not the first-admin form
    assert texts(new_app().title) == ["Sign in to Model Portal"]


@pytest.mark.parametrize(("password", "again", "message"), [
    ("short", "short", "too short"),
    ("root", "root", "too short"),
    ("rootroot", "rootroot", "must not be the user name"),
    (PASSWORD, PASSWORD + "!", "The two passwords differ"),
])
def test_first_admin_form_refuses_a_bad_password(accounts_home: Path, password: str, again: str, message: str) -> None:
    name = "rootroot" if password == "rootroot" else "root"
    at = _create_first_admin(new_app(), name, password, again)
    assert_clean(at)
    assert message in " ".join(texts(at.error))
    assert _users(accounts_home) == []


@pytest.mark.parametrize("name", ["", "-dash-first", "ro\x00ot", "new\nline", "robert'); DROP TABLE users;--"])
def test_first_admin_form_refuses_bad_names(accounts_home: Path, name: str) -> None:
    at = _create_first_admin(new_app(), name, PASSWORD)
    assert_clean(at)
    assert "invalid user name" in " ".join(texts(at.error))
    assert _users(accounts_home) == []


# -- sign-in -----------------------------------------------------------------------------
def test_sign_in_with_the_right_password(accounts_home: Path) -> None:
    make_user(accounts_home, "ana", "analyst", password=PASSWORD)
    at = new_app("app_pages/upload.py")
    assert texts(at.title) == ["Sign in to Model Portal"]
    at = sign_in(at, "ana", PASSWORD)
    assert_clean(at)
    assert "**ana** · analyst" in _signed_in_as(at)
    assert [e[1:3] for e in _audit(accounts_home, action="signin.ok")] == [("signin.ok", "ana")]


def test_wrong_password_is_a_clear_message_and_audited_without_the_password(accounts_home: Path) -> None:
    make_user(accounts_home, "ana", "analyst", password=PASSWORD)
    at = sign_in(new_app(), "ana", "not the password")
    assert_clean(at)
    assert texts(at.error) == ["wrong user name or password"]
    assert texts(at.title) == ["Sign in to Model Portal"]
    (event,) = _audit(accounts_home, action="signin.fail")
    assert event[:3] == ("ana", "signin.fail", "ana") and event[3]["reason"] == "wrong password"
    assert "not the password" not in str(event)


@pytest.mark.parametrize("name", ["", "x" * 10_000, "an\x07a", "an\na", "%' OR 1=1 --"])
def test_sign_in_with_a_bad_name_is_refused_cleanly(accounts_home: Path, name: str) -> None:
    make_user(accounts_home, "ana", "analyst", password=PASSWORD)
    at = sign_in(new_app(), name, PASSWORD)
    assert_clean(at)
    assert texts(at.error) == ["wrong user name or password"]
    assert all(len(e[2]) <= 64 and e[2].isprintable() for e in _audit(accounts_home, action="signin.fail"))


def test_repeated_failures_are_slowed_down_then_allowed_again(accounts_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(session, "now", lambda: clock[0])
    make_user(accounts_home, "ana", "analyst", password=PASSWORD)
    at = new_app()
    for _ in range(3):
        at = sign_in(at, "ana", "wrong password")
        assert texts(at.error) == ["wrong user name or password"]
    at = sign_in(at, "ana", PASSWORD)  # even the right password waits: it is not checked
    assert texts(at.error) == ["too many failed sign-ins for ana; try again in 2 s"]
    clock[0] += 2
    at = sign_in(at, "ana", PASSWORD)
    assert_clean(at)
    assert "**ana** · analyst" in _signed_in_as(at)


# -- the session --------------------------------------------------------------------------
def test_sign_out_ends_the_session(accounts_home: Path) -> None:
    ana = make_user(accounts_home, "ana", "analyst")
    at = signed_in_app(ana, "app_pages/models.py")
    button(at, "Sign out").click()
    at.run()
    assert_clean(at)
    assert texts(at.title) == ["Sign in to Model Portal"]
    assert texts(at.info) == ["You are signed out."]
    assert [e[1:3] for e in _audit(accounts_home, action="signout")] == [("signout", "ana")]
    at.switch_page("app_pages/upload.py")  # nothing behind the form any more
    at.run()
    assert texts(at.title) == ["Sign in to Model Portal"] and not at.file_uploader


@pytest.mark.parametrize(("advance", "reason"), [
    (30 * 60 + 1, "no activity for more than 30 minutes"),
    (None, "sessions last at most 12 hours"),
])
def test_sessions_expire(accounts_home: Path, monkeypatch: pytest.MonkeyPatch, advance: float | None,
                         reason: str) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(session, "now", lambda: clock[0])
    make_user(accounts_home, "ana", "analyst", password=PASSWORD)
    at = sign_in(new_app(), "ana", PASSWORD)
    if advance is not None:
        clock[0] += advance
    else:  # busy all day: a click every 20 minutes for 12 hours
        for _ in range(36):
            clock[0] += 20 * 60
            at.run()
        assert "**ana**" in _signed_in_as(at)
        clock[0] += 1
    at.run()
    assert_clean(at)
    assert texts(at.title) == ["Sign in to Model Portal"]
    assert texts(at.info) == [f"Signed out: {reason}."]


def test_a_disabled_user_is_locked_out_at_the_next_action(accounts_home: Path) -> None:
    make_user(accounts_home, "root", "admin")
    ana = make_user(accounts_home, "ana", "analyst")
    at = signed_in_app(ana, "app_pages/upload.py")
    assert at.file_uploader
    p = Portal.open(accounts_home)
    try:
        Auth(p.registry).update_user("ana", disabled=True, actor="root")
    finally:
        p.close()
    at.run()
    assert_clean(at)
    assert texts(at.info) == ["Signed out: the account ana was disabled by an admin."]
    assert not at.file_uploader
    at = sign_in(at, "ana", PASSWORD)  # and cannot come back
    assert texts(at.error) == ["the account ana is disabled; ask an admin to enable it"]


def test_a_deleted_and_recreated_name_is_not_the_same_session(accounts_home: Path) -> None:
    make_user(accounts_home, "root", "admin")
    ana = make_user(accounts_home, "ana", "analyst")
    at = signed_in_app(ana)
    p = Portal.open(accounts_home)
    try:
        Auth(p.registry).delete_user("ana", actor="root")
        Auth(p.registry).add_user("ana", "admin", actor="root")
    finally:
        p.close()
    at.run()
    assert texts(at.info) == ["Signed out: the account ana no longer exists."]


def test_a_role_change_applies_at_the_next_action(accounts_home: Path) -> None:
    make_user(accounts_home, "root", "admin")
    ana = make_user(accounts_home, "ana", "analyst")
    at = signed_in_app(ana, "app_pages/upload.py")
    p = Portal.open(accounts_home)
    try:
        Auth(p.registry).update_user("ana", role="viewer", actor="root")
    finally:
        p.close()
    at.run()
    assert "**ana** · viewer" in _signed_in_as(at)
    assert texts(at.warning) == ["Viewers cannot upload models; ask an admin for the analyst role."]


def test_single_user_mode_says_so_in_the_sidebar(empty_home: Path) -> None:
    at = new_app()
    assert session.OFF_NOTE in _signed_in_as(at)
    assert not [b for b in at.sidebar.button if b.label == "Sign out"]


# -- each page as each role ------------------------------------------------------------------
PAGES = ["app_pages/home.py", "app_pages/upload.py", "app_pages/models.py", "app_pages/predict.py",
         "app_pages/compare.py", "app_pages/explain.py", "app_pages/monitor.py", "app_pages/admin.py"]


@pytest.fixture
def team(accounts_home: Path) -> dict[str, object]:
    """root (admin), vic (viewer), ana and bob (analysts); models anas, bobs (shared) and bobs-secret (private)."""
    from tiny import add_model, softmax_classifier

    users = {name: make_user(accounts_home, name, role) for name, role in
             [("root", "admin"), ("vic", "viewer"), ("ana", "analyst"), ("bob", "analyst")]}
    p = Portal.open(accounts_home)
    try:
        for name, owner, visibility in [("anas", "ana", "shared"), ("bobs", "bob", "shared"),
                                        ("bobs-secret", "bob", "private")]:
            add_model(p, softmax_classifier(seed=len(name)), name, task="classification")
            p.registry.update_model(name, actor="tests", owner=owner, visibility=visibility)
    finally:
        p.close()
    return users


def _open(at, name: str):
    from ui_fixtures import select_model

    return select_model(at, name)


def _page_text(at) -> str:
    return " ".join(texts(at.caption) + texts(at.warning) + texts(at.error) + texts(at.info) + texts(at.markdown))


@pytest.mark.parametrize("role", ["vic", "ana", "bob", "root"])
def test_every_page_renders_for_every_role(team: dict, role: str) -> None:
    at = signed_in_app(team[role])
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert_clean(at)
        listed = at.selectbox(key="picker.model").options
        assert ("bobs-secret" in listed) is (role in ("bob", "root"))  # private: its owner and admins only
        if page == "app_pages/admin.py":
            assert (texts(at.title), bool(at.tabs)) == (["Admin"], role == "root")
            if role != "root":
                assert texts(at.error) == ["The Admin page is for admins. "
                                           f"{'Viewers' if role == 'vic' else 'Analysts'} cannot manage users and "
                                           "tokens; ask an admin for the admin role."]
        else:
            assert not at.error, (page, texts(at.error))


@pytest.mark.parametrize(("role", "allowed"), [("vic", False), ("ana", True), ("root", True)])
def test_upload_is_for_analysts_and_admins(team: dict, role: str, allowed: bool) -> None:
    at = signed_in_app(team[role], "app_pages/upload.py")
    assert bool(at.file_uploader) is allowed
    if not allowed:
        assert texts(at.warning) == ["Viewers cannot upload models; ask an admin for the analyst role."]


@pytest.mark.parametrize(("role", "model", "reason"), [
    ("vic", "anas", "Viewers cannot delete models; ask an admin for the analyst role."),
    ("ana", "bobs", "Only the owner (bob) or an admin can delete this model."),
    ("ana", "anas", None),
    ("root", "bobs", None),
])
def test_models_page_disables_what_the_role_may_not_do(team: dict, role: str, model: str, reason: str | None) -> None:
    at = _open(signed_in_app(team[role], "app_pages/models.py"), model)
    assert_clean(at)
    delete = button(at, f"Delete {model}:1")
    text = _page_text(at)
    assert f"Owner **{'ana' if model == 'anas' else 'bob'}**" in text
    if reason is None:
        assert at.checkbox(key=f"del.ok.{model}:1") and "Point alias" in [b.label for b in at.button]
        assert [b.label for b in at.button if b.label in ("Make private", "Share with everyone")] == ["Make private"]
    else:
        assert delete.disabled and reason in text and not at.checkbox
        assert "Point alias" not in [b.label for b in [*at.button, *at.form_submit_button]]
        assert "Save changes" not in [b.label for b in at.form_submit_button]
        assert not [b for b in at.button if b.label == "Make private"]


def test_owner_switches_visibility_and_others_lose_sight_of_the_model(team: dict) -> None:
    at = _open(signed_in_app(team["ana"], "app_pages/models.py"), "anas")
    button(at, "Make private").click()
    at.run()
    assert_clean(at)
    assert "anas is now private." in texts(at.success)
    assert "only its owner and admins see it" in _page_text(at)
    other = signed_in_app(team["bob"], "app_pages/models.py")
    assert "anas" not in other.selectbox(key="picker.model").options
    assert ("ana", "model.update", "anas") in [e[:3] for e in _audit(other_home(team))]


def other_home(team: dict) -> Path:
    import os

    return Path(os.environ["PORTAL_HOME"])


def test_an_analyst_cannot_delete_another_analysts_private_model_through_any_page(team: dict) -> None:
    at = signed_in_app(team["ana"])
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert_clean(at)
        assert "bobs-secret" not in at.selectbox(key="picker.model").options
        assert not [b for b in at.button if "bobs-secret" in b.label]
        assert "bobs-secret" not in _page_text(at)
        assert all("bobs-secret" not in frame.value.to_csv() for frame in at.dataframe)
    p = Portal.open(other_home(team))
    try:
        assert [v.ref for v in p.get_model("bobs-secret").versions] == ["bobs-secret:1"]
        hidden = p.as_user(team["ana"])
        with pytest.raises(NotFoundError):  # the library, behind every page, does not even admit it exists
            hidden.delete("bobs-secret")
        assert p.get("bobs-secret:1").ref == "bobs-secret:1"
    finally:
        p.close()


def test_the_library_refuses_a_delete_the_page_was_bypassed_for(team: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import portal.ui.models_panels as manage

    monkeypatch.setattr(manage, "why_not", lambda *args, **kwargs: None)  # a page that forgot to check
    at = _open(signed_in_app(team["ana"], "app_pages/models.py"), "bobs")
    at.checkbox(key="del.ok.bobs:1").check()
    at.run()
    button(at, "Delete bobs:1").click()
    at.run()
    assert_clean(at)
    assert texts(at.error) == ["analyst 'ana' may not delete this model: it belongs to 'bob'; only its owner or an "
                               "admin may"]
    p = Portal.open(other_home(team))
    try:
        assert p.get("bobs:1").ref == "bobs:1"
    finally:
        p.close()


@pytest.mark.parametrize(("role", "refused"), [  # issue 14: the reason names variants, not uploads
    ("vic", "Viewers cannot create variants; ask an admin for the analyst role."),
    ("ana", "Only the owner (bob) or an admin can create variants of this model."),
    ("bob", None),
])
def test_compare_page_offers_variants_to_the_owner_only(team: dict, role: str, refused: str | None) -> None:
    at = _open(signed_in_app(team[role], "app_pages/compare.py"), "bobs")
    assert_clean(at)
    assert button(at, "Create variants and compare").disabled is (refused is not None)
    disabled = {u.label: u.proto.disabled for u in at.file_uploader}
    assert disabled == {"Calibration data (optional)": refused is not None,
                        "Evaluation data (optional)": refused is not None}
    settings = {w.label: w.disabled for w in [*at.checkbox, *at.selectbox, *at.slider]
                if w.label in ("Per-channel int8", "Calibration", "Prune sparsity")}
    assert settings == dict.fromkeys(("Per-channel int8", "Calibration", "Prune sparsity"), refused is not None)
    (not_compared,) = [t for t in texts(at.info) if "has not been compared yet" in t]
    if refused:
        assert refused in _page_text(at) and refused in not_compared
        assert "press" not in not_compared  # no instruction to press the disabled button
    else:
        assert "press **Create variants and compare**" in not_compared


def test_sign_in_lands_on_home_not_on_the_previous_users_page(team: dict) -> None:
    at = signed_in_app(team["root"], "app_pages/admin.py")
    assert at.tabs  # root is on the Admin page ...
    button(at, "Sign out").click()
    at.run()
    at = sign_in(at, "vic", PASSWORD)  # ... and vic signs in at the same browser
    assert_clean(at)
    assert "**vic** · viewer" in _signed_in_as(at)
    assert texts(at.title) == ["Model Portal"] and not at.error  # Home, not "The Admin page is for admins"


def test_first_admin_lands_on_home(accounts_home: Path) -> None:
    at = _create_first_admin(new_app("app_pages/admin.py"), "root", PASSWORD)
    assert_clean(at)
    assert texts(at.title) == ["Model Portal"]


@pytest.mark.parametrize(("role", "shown"), [("vic", False), ("ana", False), ("root", True)])
def test_the_store_path_is_shown_to_admins_only(team: dict, role: str, shown: bool) -> None:
    import os

    at = signed_in_app(team[role])
    assert (os.environ["PORTAL_HOME"] in " ".join(texts(at.sidebar.caption))) is shown


def test_single_user_mode_shows_the_store_path(empty_home: Path) -> None:
    at = new_app()
    assert f"Store: `{empty_home}`" in texts(at.sidebar.caption)


def test_models_page_offers_the_triton_and_kserve_export_of_the_version(team: dict) -> None:
    import io
    import zipfile

    from portal.storage.export import export_zip

    at = _open(signed_in_app(team["vic"], "app_pages/models.py"), "bobs")
    assert "Download Triton export" in [b.proto.label for b in at.get("download_button")]
    at.selectbox(key="export.format.bobs").select("KServe")
    at.run()
    assert "Download KServe export" in [b.proto.label for b in at.get("download_button")]
    p = Portal.open(other_home(team))
    try:
        archive = zipfile.ZipFile(io.BytesIO(export_zip(p.as_user(team["vic"]), "bobs:1", fmt="kserve")))
        assert sorted(archive.namelist()) == ["bobs/1/model.onnx", "bobs/config.pbtxt", "bobs/inferenceservice.yaml"]
        assert archive.read("bobs/1/model.onnx") == p.model_bytes("bobs:1")
        assert 'platform: "onnxruntime_onnx"' in archive.read("bobs/config.pbtxt").decode()
        with pytest.raises(NotFoundError):  # a private model of someone else cannot be exported either
            export_zip(p.as_user(team["vic"]), "bobs-secret:1")
    finally:
        p.close()
