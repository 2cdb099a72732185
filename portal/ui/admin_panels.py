"""Panels of the Admin page: users, API tokens, audit log, in three tabs.

Every change goes through :class:`portal.accounts.auth.Auth` with the signed-in admin as
``actor`` (re-checked there), so it is refused for anyone else and audited.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from ..accounts.auth import ROLES, Auth, User
from ..core import Portal
from . import keys
from .audit import audit_csv, audit_frame, find_events
from .session import auth
from .tabs import kept_tabs
from .widgets import flash, shown_errors

__all__ = ["NEVER", "admin_tabs", "audit_panel", "last_used_text", "tokens_panel", "users_panel"]

_WHEN = "YYYY-MM-DD HH:mm:ss"
NEVER = "never"  # the "Last used" of a token no request has used yet


def last_used_text(when: dt.datetime | None) -> str:
    """A token's "Last used" cell: the time (UTC, to the second), or "never"."""
    return when.strftime("%Y-%m-%d %H:%M:%S") if when is not None else NEVER


def admin_tabs(portal: Portal) -> None:
    """The Users, API tokens and Audit log tabs, acting as the signed-in admin."""
    store = auth(portal)
    actor = portal.user or portal.actor  # the admin, checked again by the library on every change
    users, tokens, audit = kept_tabs(["Users", "API tokens", "Audit log"], key=keys.ADMIN_TAB)
    with users:
        users_panel(store, actor)
    with tokens:
        tokens_panel(store, actor, st.session_state.get(keys.NEW_SECRET))
    with audit:
        audit_panel(portal)


def _users_frame(users: list[User]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"User": u.name, "Role": u.role, "State": "disabled" if u.disabled else "active",
          "Password": "set" if u.has_password else "none (API tokens only)", "Created": u.created_at}
         for u in users],
        columns=["User", "Role", "State", "Password", "Created"],
    )


def users_panel(store: Auth, actor: User | str) -> None:
    """The users table; create a user; change a role, disable or enable, reset a password, delete."""
    users = store.list_users()
    st.dataframe(_users_frame(users), hide_index=True, width="stretch",
                 column_config={"Created": st.column_config.DatetimeColumn("Created", format=_WHEN)})
    left, right = st.columns(2, gap="large")
    with left, st.form("admin.user.new", clear_on_submit=True):
        st.markdown("**Create a user**")
        name = st.text_input("User name", max_chars=64, key="admin.new.name",
                             help="1-64 letters, digits, '.', '_', '@' or '-'")
        role = st.selectbox("Role", ROLES, key="admin.new.role")
        password = st.text_input("Initial password", type="password", max_chars=1024, key="admin.new.password",
                                 help="At least 8 characters; leave empty for an API-only account")
        if st.form_submit_button("Create user", type="primary", icon=":material/person_add:"):
            with shown_errors(stop=True):
                store.add_user(name.strip(), role, actor=actor, password=password or None)
            flash(f"Created the {role} {name.strip()}.")
            st.rerun()
    with right:
        _change_user(store, actor, users)


def _change_user(store: Auth, actor: User | str, users: list[User]) -> None:
    if not users:
        return
    st.markdown("**Change a user**")
    names = [u.name for u in users]
    name = st.selectbox("User", names, key="admin.edit.user")
    user = users[names.index(name)]
    cols = st.columns([2, 1, 1], vertical_alignment="bottom")
    role = cols[0].selectbox("Role", ROLES, index=ROLES.index(user.role), key=f"admin.edit.role.{name}")
    if cols[1].button("Save role", key="admin.edit.save", disabled=role == user.role):
        with shown_errors(stop=True):
            store.update_user(name, role=role, actor=actor)
        flash(f"{name} is now {role}.")
        st.rerun()
    toggle = "Enable" if user.disabled else "Disable"
    if cols[2].button(toggle, key="admin.edit.toggle",
                      help="A disabled user is signed out at their next click; their tokens stop working"):
        with shown_errors(stop=True):
            store.update_user(name, disabled=not user.disabled, actor=actor)
        flash(f"{toggle}d {name}.")
        st.rerun()
    with st.form("admin.user.password", clear_on_submit=True, border=False):
        cols = st.columns([3, 2], vertical_alignment="bottom")
        password = cols[0].text_input(f"New password for {name}", type="password", max_chars=1024,
                                      key="admin.edit.password")
        if cols[1].form_submit_button("Reset password", icon=":material/key:"):
            with shown_errors(stop=True):
                store.set_password(name, password, actor=actor)
            flash(f"Set a new password for {name}; tell them through a safe channel.")
            st.rerun()
    _delete_user(store, actor, user, users)


def _delete_user(store: Auth, actor: User | str, user: User, users: list[User]) -> None:
    """Delete ``user`` and their tokens; the models they own go to the user picked here (required)."""
    name = user.name
    owned = store.owned_models(name)
    st.markdown(f"**Delete {name}**")
    heir = None
    if owned:
        count = f"{len(owned)} model{'s' if len(owned) != 1 else ''}"
        heir = st.selectbox(f"Give their {count} to", [u.name for u in users if u.name != name], index=None,
                            placeholder="Choose the new owner", key=f"admin.delete.heir.{name}",
                            help=f"{name} owns {', '.join(owned[:20])}{' …' if len(owned) > 20 else ''}")
    else:
        st.caption(f"{name} owns no models.")
    sure = st.checkbox(f"Yes, delete {name} and their API tokens", key=f"admin.delete.sure.{name}")
    blocked = bool(owned) and heir is None
    if st.button("Delete user", key="admin.delete.go", icon=":material/person_remove:", disabled=not sure or blocked,
                 help="Choose who takes over their models first" if blocked else None):
        with shown_errors(stop=True):
            moved = store.delete_user(name, actor=actor, reassign_to=heir)
        flash(f"Deleted {name}." + (f" Their {len(moved)} model(s) now belong to {heir}." if moved else ""))
        st.rerun()


def tokens_panel(store: Auth, actor: User | str, new_secret: tuple[str, int, str] | None) -> None:
    """Create a token (its secret shown once), list tokens, revoke one."""
    if new_secret is not None:
        user, token_id, secret = new_secret
        st.warning(f"The secret of token {token_id} for **{user}**: copy it now. It is shown only this once "
                   "and cannot be recovered; revoke the token if it leaks.", icon=":material/key:")
        st.code(secret, language=None)
        if st.button("I have stored it", key="admin.token.done", icon=":material/check:"):
            st.session_state.pop(keys.NEW_SECRET, None)
            st.rerun()
    users = [u.name for u in store.list_users()]
    with st.form("admin.token.new", clear_on_submit=True):
        cols = st.columns([2, 3, 1], vertical_alignment="bottom")
        owner = cols[0].selectbox("For user", users, key="admin.token.user")
        label = cols[1].text_input("Label", max_chars=64, key="admin.token.label", placeholder="what it is for")
        if cols[2].form_submit_button("Create token", type="primary", icon=":material/add:") and owner:
            with shown_errors(stop=True):
                made = store.create_token(owner, label=label, actor=actor)
            st.session_state[keys.NEW_SECRET] = (made.info.user, made.info.id, made.secret)
            st.rerun()
    every = st.checkbox("Show revoked tokens", key="admin.token.all")
    tokens = store.list_tokens(include_revoked=every)
    st.dataframe(pd.DataFrame(
        [{"Id": t.id, "User": t.user, "Label": t.label, "Starts with": t.prefix + "…", "Created": t.created_at,
          "Last used": last_used_text(t.last_used_at), "State": "active" if t.active else "revoked"}
         for t in tokens],
        columns=["Id", "User", "Label", "Starts with", "Created", "Last used", "State"],
    ), hide_index=True, width="stretch", column_config={
        "Created": st.column_config.DatetimeColumn("Created", format=_WHEN),
        "Last used": st.column_config.TextColumn("Last used", help="Time of the last request made with it (UTC)"),
    })
    active = {t.id: t for t in tokens if t.active}
    if not active:
        return
    cols = st.columns([3, 1], vertical_alignment="bottom")
    chosen = cols[0].selectbox("Token", list(active), key="admin.token.revoke",
                               format_func=lambda i: f"{i} · {active[i].user} · {active[i].label or active[i].prefix}")
    if cols[1].button("Revoke", key="admin.token.revoke.go", icon=":material/block:"):
        with shown_errors(stop=True):
            info = store.revoke_token(chosen, actor=actor)
        flash(f"Revoked token {info.id} of {info.user}; requests made with it fail from now on.")
        st.rerun()


def audit_panel(portal: Portal) -> None:
    """The audit trail with literal filters (who, action, model, days) and a CSV download."""
    cols = st.columns(5)
    who = cols[0].text_input("Who", key="audit.who", max_chars=128, help="Exact user name")
    action = cols[1].text_input("Action", key="audit.action", max_chars=64,
                                help="Exact action, e.g. signin.fail, alias.set, version.delete")
    model = cols[2].text_input("Model", key="audit.model", max_chars=256,
                               help="A model name: its versions (name:N) and aliases (name@alias) match too")
    since = cols[3].date_input("From", value=None, key="audit.since", format="YYYY-MM-DD")
    until = cols[4].date_input("To", value=None, key="audit.until", format="YYYY-MM-DD")
    events = find_events(portal.registry, who=who, action=action, model=model,
                         since=since if isinstance(since, dt.date) else None,
                         until=until if isinstance(until, dt.date) else None)
    st.dataframe(audit_frame(events), hide_index=True, width="stretch", key="audit.table",
                 column_config={"When": st.column_config.DatetimeColumn("When", format=_WHEN)})
    st.caption(f"{len(events)} event(s), newest first (at most 1000) · times in UTC")
    st.download_button("Download CSV", data=audit_csv(events), file_name="audit.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore", key="audit.csv")
