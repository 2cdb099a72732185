"""Commands that look after the store: fsck, backup, restore, export, keygen, rotate-key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import Settings
from .common import JsonOpt, emit, fail, handles_errors, open_portal

__all__ = ["backup_command", "export", "fsck", "keygen", "restore_command", "rotate_key"]


@handles_errors
def fsck(
    verify: Annotated[bool, typer.Option("--verify/--quick", help="Re-hash every blob (default) or only check that files exist")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only, repair nothing")] = False,
    grace: Annotated[float, typer.Option(help="Only collect debris older than this many seconds")] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Check that registry and blob files agree; collect orphans (never a referenced blob)."""
    from ..core import Portal

    p = Portal.open(settings=Settings.from_env(), check=False)
    report = p.fsck(repair=not dry_run, verify=verify, grace_seconds=grace)
    emit(report.__dict__ | {"healthy": report.healthy}, as_json, report.summary)
    if not report.healthy:
        raise typer.Exit(2)


@handles_errors
def backup_command(
    dest: Annotated[Path, typer.Argument(help="Backup file to write (.tar)")],
    as_json: JsonOpt = False,
) -> None:
    """Write a consistent snapshot of the registry and its blobs (safe while the portal runs)."""
    from ..storage.backup import backup

    info = backup(open_portal(), dest)
    emit(info.__dict__, as_json,
         lambda: f"backed up {info.models} models, {info.versions} versions, {info.blobs} blobs "
                 f"({info.bytes / 1024**2:.1f} MiB) to {info.path}")


@handles_errors
def restore_command(
    source: Annotated[Path, typer.Argument(help="Backup file written by `portal backup`")],
    home: Annotated[Path | None, typer.Option(help="Empty directory to restore into (default: PORTAL_HOME)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty home, verifying every file's hash."""
    from ..storage.backup import restore
    from ..storage.crypto import BlobCipher

    settings = Settings.from_env()
    cipher = BlobCipher(settings.encryption_key) if settings.encryption_key else None
    info = restore(source, home or settings.home, cipher=cipher)
    emit(info.__dict__, as_json,
         lambda: f"restored {info.models} models, {info.versions} versions, {info.blobs} blobs into {info.path}")


@handles_errors
def export(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    dest: Annotated[Path, typer.Argument(help="Model repository directory")],
    fmt: Annotated[str, typer.Option("--format", help="triton, or kserve (triton + InferenceService)")] = "triton",
    storage_uri: Annotated[str | None, typer.Option("--storage-uri", help="KServe storageUri of the repository")] = None,
) -> None:
    """Export a version as a Triton model repository (and a KServe manifest)."""
    from ..storage.export import export_repository

    for path in export_repository(open_portal(), ref, dest, fmt=fmt, storage_uri=storage_uri):
        typer.echo(f"wrote {path}")


def keygen() -> None:
    """Print a new random key for PORTAL_ENCRYPTION_KEY."""
    from ..storage.crypto import generate_key

    typer.echo(generate_key())


@handles_errors
def rotate_key(
    decrypt: Annotated[bool, typer.Option("--decrypt", help="Store blobs in plaintext again")] = False,
) -> None:
    """Re-encrypt every blob with PORTAL_NEW_ENCRYPTION_KEY (current key: PORTAL_ENCRYPTION_KEY).

    Stop the portal first; afterwards start it with the new key in PORTAL_ENCRYPTION_KEY.
    """
    import os

    new_key = None if decrypt else os.environ.get("PORTAL_NEW_ENCRYPTION_KEY")
    if not decrypt and not new_key:
        fail("set PORTAL_NEW_ENCRYPTION_KEY to the new key (`portal keygen`), or pass --decrypt")
    count = open_portal().rotate_key(new_key)
    typer.echo(f"rewrote {count} blobs {'in plaintext' if decrypt else 'with the new key'}; "
               "now set PORTAL_ENCRYPTION_KEY to the new key")
