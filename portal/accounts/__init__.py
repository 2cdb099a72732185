"""Who may do what: users, roles, passwords, sign-in and API tokens, in the registry's database.

:class:`portal.accounts.auth.Auth` is the one entry point; its parts are split
by concern, and every change they make is audited in its own transaction.

    roles       roles (viewer < analyst < admin), User, ``allowed`` / ``require``
    auth        Auth: add, change and delete users, the first admin; re-exports the public names
    signin      set a password, sign in with back-off, record a sign-out
    passwords   password rules, argon2 hashing and the back-off arithmetic (no database)
    tokens      API tokens: create, list, revoke, authenticate every request
    store       AccountStore: what the parts share (transactions, audit rows, the acting user's checks)
"""
