"""The ``portal`` command line (typer): every command, registered on one ``app``.

Human-readable output by default, JSON with ``--json``.  A user error prints one
line on stderr and exits 1; never a traceback.  ``portal`` (the console script)
and ``python -m portal.cli`` both run :func:`main`.  Commands are listed by
``--help`` in the order they are registered below.

    common     the typer ``app``, ``--token`` and the portal it opens, errors, output helpers
    models     register, list, show, edit, alias, delete, demo
    predict    predict
    admin      fsck, backup, restore, export, keygen, rotate-key
    serve      ui (Streamlit), serve (REST + gRPC, or Ray Serve)
    variants   compress, compare
    explain    explain (SHAP, LIME, or their agreement)
    users      users add / list / passwd / update / delete, tokens create / list / revoke
    monitor    monitor summary / prune
"""

from __future__ import annotations

from .admin import backup_command, export, fsck, keygen, restore_command, rotate_key
from .common import app, handles_errors
from .explain import explain
from .models import alias, delete, demo, edit, list_models, register, show
from .monitor import monitor_app
from .predict import predict
from .serve import serve, ui
from .users import tokens_app, users_app
from .variants import compare, compress

__all__ = ["app", "handles_errors", "main"]

app.command()(register)
app.command("list")(list_models)
app.command()(show)
app.command()(predict)
app.command()(edit)
app.command()(alias)
app.command()(delete)
app.command()(demo)
app.command()(fsck)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.command()(export)
app.command()(keygen)
app.command("rotate-key")(rotate_key)
app.command()(ui)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.command()(serve)
app.command()(compress)
app.command()(compare)
app.command()(explain)
app.add_typer(monitor_app, name="monitor")


def main() -> None:
    """Entry point of the ``portal`` console script."""
    app()
