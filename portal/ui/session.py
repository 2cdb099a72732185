"""Who uses this browser session: sign-in, the first-admin form, expiry, sign-out.

The signed-in state lives in ``st.session_state`` and is checked at the start of
every run (:func:`check`): the user is read again from the database, so a
disabled or deleted account, or a changed role, takes effect at the user's next
click, and idle and absolute expiry come from :class:`portal.config.Settings`.
Pages act through :func:`current_portal`, the shared portal scoped to that user.

Streamlit keeps session state per browser tab connection: reloading the page
starts a new session, which signs in again.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import streamlit as st

from ..accounts.auth import Auth, User
from ..core import Portal
from ..errors import NotFoundError, PortalError
from . import keys
from .resources import get_portal

__all__ = ["HOME", "Access", "SignedIn", "auth", "check", "current_portal", "now", "sidebar", "sign_in_page"]

# Where a sign-in lands: not the page the address bar still shows, which may be the
# previous user's (an admin's Admin page in a shared browser) or one this user may not open.
HOME = "app_pages/home.py"
OFF_NOTE = "Single-user mode (PORTAL_AUTH=off): no sign-in, every action allowed"


def now() -> float:
    """Seconds since the epoch; tests replace it to move time forward."""
    return time.time()


def _utcnow() -> dt.datetime:
    return dt.datetime.fromtimestamp(now(), dt.UTC).replace(tzinfo=None)


def auth(portal: Portal) -> Auth:
    """The user store of ``portal``, on this module's clock."""
    return Auth(portal.registry, clock=_utcnow)


@dataclass
class SignedIn:
    """The session of one signed-in user (times from :func:`now`)."""

    user_id: int
    name: str
    signed_in_at: float
    last_seen: float
    created_at: dt.datetime | None = None  # of the account: a deleted name made again is another account


@dataclass(frozen=True)
class Access:
    """The outcome of :func:`check`: ``mode`` is off, user, sign-in or first-admin."""

    mode: str
    user: User | None = None

    @property
    def allowed(self) -> bool:
        return self.mode in ("off", "user")


def check(portal: Portal) -> Access:
    """Who this run acts for; an expired, disabled or deleted user's session ends here."""
    if not portal.settings.auth:
        st.session_state[keys.USER] = None
        return Access("off")
    user = _session_user(portal)
    st.session_state[keys.USER] = user
    if user is not None:
        return Access("user", user)
    return Access("sign-in" if auth(portal).has_users() else "first-admin")


def _session_user(portal: Portal) -> User | None:
    state: SignedIn | None = st.session_state.get(keys.SIGNED_IN)
    if state is None:
        return None
    try:
        user: User | None = auth(portal).get_user(state.name)
    except NotFoundError:
        user = None
    t, settings = now(), portal.settings
    if user is None or (user.id, user.created_at) != (state.user_id, state.created_at):
        reason = f"the account {state.name} no longer exists"
    elif user.disabled:
        reason = f"the account {state.name} was disabled by an admin"
    elif t - state.last_seen > settings.session_idle_seconds:
        reason = f"no activity for more than {settings.session_idle_seconds // 60} minutes"
    elif t - state.signed_in_at > settings.session_max_seconds:
        reason = f"sessions last at most {settings.session_max_seconds / 3600:g} hours"
    else:
        state.last_seen = t
        return user
    _end(portal, state.name, reason)
    return None


def _end(portal: Portal, name: str, reason: str) -> None:
    """Forget everything this browser session held and say why on the sign-in form."""
    from .staging import forget

    forget(portal)  # a staged upload's files
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[keys.AUTH_NOTICE] = f"Signed out: {reason}." if reason != "signed out" else "You are signed out."
    auth(portal).record_sign_out(name, reason=reason)


def _start(user: User) -> None:
    t = now()
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[keys.SIGNED_IN] = SignedIn(user.id, user.name, t, t, user.created_at)


def current_portal() -> Portal:
    """The shared portal acting for this run's user (unrestricted with PORTAL_AUTH=off)."""
    portal = get_portal()
    if not portal.settings.auth:
        return portal.as_user(None, source="ui")
    user = st.session_state.get(keys.USER)
    if user is None:  # the entry script shows the sign-in form before any page runs
        st.stop()
    return portal.as_user(user, source="ui")


def _sign_out() -> None:
    state: SignedIn | None = st.session_state.get(keys.SIGNED_IN)
    if state is not None:
        _end(get_portal(), state.name, "signed out")


def sidebar(access: Access) -> None:
    """Who is signed in, with the sign-out button; or the single-user note."""
    if access.mode == "off":
        st.markdown(f":orange[:material/lock_open: {OFF_NOTE}]")
        return
    assert access.user is not None
    st.markdown(f":material/account_circle: **{access.user.name}** · {access.user.role}")
    st.button("Sign out", key="auth.signout", on_click=_sign_out, icon=":material/logout:", width="stretch")


def sign_in_page(portal: Portal, *, first_admin: bool) -> None:
    """The sign-in form, or on a store with no users the first-admin form."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        notice = st.session_state.pop(keys.AUTH_NOTICE, None)
        if notice:
            st.info(notice, icon=":material/logout:")
        if first_admin:
            _first_admin_form(portal)
        else:
            _sign_in_form(portal)


def _sign_in_form(portal: Portal) -> None:
    st.title("Sign in to Model Portal")
    with st.form("auth.signin"):
        name = st.text_input("User name", key="auth.name", max_chars=64, autocomplete="username")
        password = st.text_input("Password", type="password", key="auth.password", max_chars=1024,
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    st.caption("No account? Ask an admin of this portal to create one.")
    if submitted:
        try:
            user = auth(portal).sign_in(name.strip(), password, source="ui")
        except PortalError as exc:
            st.error(exc.message, icon=":material/error:")
            return
        _start(user)
        st.switch_page(HOME)


def _first_admin_form(portal: Portal) -> None:
    st.title("Create the first admin account")
    st.info("This portal has no accounts yet. The account you create now is an **admin**: it signs in at once "
            "and adds the other users on the **Admin** page. (For a single-user laptop without sign-in, start "
            "the portal with `PORTAL_AUTH=off`.)", icon=":material/admin_panel_settings:")
    with st.form("auth.first"):
        name = st.text_input("User name", key="auth.first.name", max_chars=64,
                             help="1-64 letters, digits, '.', '_', '@' or '-'")
        password = st.text_input("Password", type="password", key="auth.first.password", max_chars=1024,
                                 help="At least 8 characters, not the user name", autocomplete="new-password")
        again = st.text_input("Repeat the password", type="password", key="auth.first.again", max_chars=1024,
                              autocomplete="new-password")
        submitted = st.form_submit_button("Create admin and sign in", type="primary", icon=":material/person_add:")
    if submitted:
        if password != again:
            st.error("The two passwords differ; type the same password twice.", icon=":material/error:")
            return
        try:
            user = auth(portal).create_first_admin(name.strip(), password)
        except PortalError as exc:
            st.error(exc.message, icon=":material/error:")
            return
        _start(user)
        st.switch_page(HOME)
