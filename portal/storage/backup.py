"""Consistent backups of a running store, and restore into an empty home.

A backup is an uncompressed tar holding ``portal.db`` (an SQLite online-backup
snapshot, consistent even while other processes write), every blob that the
snapshot references under ``blobs/<sha256>``, and ``manifest.json`` with the
sha256 of every member.  Blobs are immutable and named by their hash, so the
only race is a blob deleted between the snapshot and the copy: it is then
retried from a fresh snapshot.

Restore trusts nothing in the archive: it accepts only those three kinds of
regular-file members, checks every blob's content against its sha256 name
(what detects a changed blob), and places nothing until all of them passed.
The manifest's checksums only catch accidental damage: whoever edits an archive
can rewrite them, and ``portal.db`` itself is not authenticated.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, NotFoundError, PortalError
from .crypto import MAGIC, BlobCipher, IntegrityError

if TYPE_CHECKING:
    from ..services import ModelServices
    from .store import BlobStore

__all__ = ["BackupInfo", "backup", "restore"]

_FORMAT = "model-portal-backup/1"
_CHUNK = 1 << 20
_BLOB_MEMBER = re.compile(r"blobs/[0-9a-f]{64}")
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


@dataclass(frozen=True)
class BackupInfo:
    """What a backup or restore covered."""

    path: Path
    blobs: int
    bytes: int
    models: int
    versions: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(portal: ModelServices) -> Path:
    url = portal.settings.resolved_db_url
    if not url.startswith("sqlite:///"):
        raise InvalidInputError(
            "portal backup covers the embedded SQLite registry; for PostgreSQL back up the database "
            "with pg_dump and copy the blob directory"
        )
    return Path(url.removeprefix("sqlite:///"))


def _snapshot(db: Path, dest: Path) -> tuple[set[str], int, int]:
    with sqlite3.connect(db, timeout=30) as src, sqlite3.connect(dest) as out:
        src.backup(out)
    return _contents(dest)


def _contents(db: Path) -> tuple[set[str], int, int]:
    """The blobs that registry file ``db`` references, its model count and version count."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT blob_sha, reference_sha FROM versions").fetchall()
        models = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    return {sha for row in rows for sha in row if sha}, models, len(rows)


def _link_blobs(store: BlobStore, shas: set[str], into: Path) -> set[str]:
    missing = set()
    for sha in shas:
        target = into / sha
        if target.exists():
            continue
        try:
            store.copy_raw(sha, target)
        except NotFoundError:
            missing.add(sha)
    return missing


def backup(portal: ModelServices, dest: str | Path, *, attempts: int = 3) -> BackupInfo:
    """Write a consistent snapshot of ``portal``'s registry and blobs to ``dest`` (a .tar)."""
    dest = Path(dest)
    db = _sqlite_path(portal)
    with tempfile.TemporaryDirectory(dir=portal.store.tmp_root, prefix="backup-") as tmp:
        work = Path(tmp)
        blobs_dir = work / "blobs"
        blobs_dir.mkdir()
        for _ in range(attempts):
            _link_blobs(portal.store, set(portal.store.iter_blobs()), blobs_dir)
            snapshot = work / "portal.db"
            snapshot.unlink(missing_ok=True)
            referenced, models, versions = _snapshot(db, snapshot)
            if not _link_blobs(portal.store, referenced, blobs_dir):
                break
        else:
            raise PortalError("the store changed too fast to snapshot consistently; retry the backup")
        manifest = {"format": _FORMAT, "files": {"portal.db": _sha256(snapshot)}, "models": models,
                    "versions": versions}
        total = snapshot.stat().st_size
        for sha in sorted(referenced):
            manifest["files"][f"blobs/{sha}"] = _sha256(blobs_dir / sha)  # of the file as stored (maybe encrypted)
            total += (blobs_dir / sha).stat().st_size
        partial = dest.with_name(f".{dest.name}.part")
        with tarfile.open(partial, "w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            member = tarfile.TarInfo("manifest.json")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
            tar.add(snapshot, arcname="portal.db")
            for sha in sorted(referenced):
                tar.add(blobs_dir / sha, arcname=f"blobs/{sha}")
        os.replace(partial, dest)
    portal.registry.record(portal.actor, "store.backup", str(dest), {"blobs": len(referenced), "bytes": total})
    return BackupInfo(dest, len(referenced), total, models, versions)


def _allowed(name: str) -> bool:
    return name in ("manifest.json", "portal.db") or _BLOB_MEMBER.fullmatch(name) is not None


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"a link to {member.linkname!r}"
    if member.isdir():
        return "a directory"
    return "a regular file" if member.type in _REGULAR else "a device, fifo or other special file"


def _check_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member by name; anything but the regular files a backup holds, or a name twice, is refused."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        if not _allowed(member.name) or member.type not in _REGULAR:
            raise InvalidInputError(
                f"unexpected member {member.name!r} ({_kind(member)}) in the backup; a Model Portal backup holds "
                "only the regular files manifest.json, portal.db and blobs/<sha256>; refusing to restore"
            )
        if member.name in members:
            raise InvalidInputError(f"member {member.name!r} appears twice in the backup; refusing to restore")
        members[member.name] = member
    return members


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> dict:
    try:
        manifest = json.loads(tar.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
        files = manifest["files"]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInputError("not a Model Portal backup (no readable manifest.json)") from exc
    if manifest.get("format") != _FORMAT:
        raise InvalidInputError(f"unsupported backup format {manifest.get('format')!r} (expected {_FORMAT})")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise InvalidInputError("not a Model Portal backup (manifest.json has no list of files)")
    present = set(members) - {"manifest.json"}
    missing = sorted((set(files) | {"portal.db"}) - present)
    if missing:
        raise InvalidInputError(f"the backup is incomplete: {len(missing)} file(s) missing, e.g. {missing[0]}")
    unlisted = sorted(present - set(files))
    if unlisted:
        raise InvalidInputError(f"unexpected member {unlisted[0]!r} in the backup (not in its manifest); refusing to restore")
    return manifest


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Copy ``member`` to ``target``; return the sha256 of the bytes written."""
    digest = hashlib.sha256()
    with tar.extractfile(member) as src, open(target, "xb") as out:  # type: ignore[union-attr]
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _check_blob(path: Path, sha: str, raw_sha: str, cipher: BlobCipher | None) -> None:
    """Refuse blob ``sha`` unless its (decrypted) content hashes to its name."""
    with open(path, "rb") as fh:
        encrypted = fh.read(len(MAGIC)) == MAGIC
    if not encrypted:
        content_sha = raw_sha
    elif cipher is None:
        raise InvalidInputError(
            f"blobs/{sha} in the backup is encrypted; restore needs the store's key (PORTAL_ENCRYPTION_KEY) "
            "to check it against its name"
        )
    else:
        try:
            content_sha = hashlib.sha256(cipher.decrypt(path.read_bytes(), sha)).hexdigest()
        except IntegrityError:
            content_sha = ""
    if content_sha != sha:
        raise InvalidInputError(
            f"blobs/{sha} in the backup is corrupted: its content does not match its sha256 name; refusing to restore"
        )


def _unpack(tar: tarfile.TarFile, staging: Path, cipher: BlobCipher | None) -> dict:
    """Extract and check every member into ``staging``; return the manifest."""
    members = _check_members(tar)
    manifest = _read_manifest(tar, members)
    (staging / "blobs").mkdir()
    for name, expected in manifest["files"].items():
        target = staging / name  # safe: ``name`` passed _allowed()
        raw_sha = _extract(tar, members[name], target)
        if raw_sha != expected:
            raise InvalidInputError(f"{name} in the backup is corrupted (its checksum differs from manifest.json)")
        if name.startswith("blobs/"):
            _check_blob(target, name.removeprefix("blobs/"), raw_sha, cipher)
    try:  # the counts reported come from the registry itself, not from the manifest's claims
        referenced, manifest["models"], manifest["versions"] = _contents(staging / "portal.db")
    except sqlite3.DatabaseError as exc:
        raise InvalidInputError(f"portal.db in the backup is not a Model Portal registry: {exc}") from exc
    absent = sorted(sha for sha in referenced if f"blobs/{sha}" not in manifest["files"])
    if absent:
        raise InvalidInputError(f"the backup is incomplete: portal.db references {len(absent)} blob(s) it does not "
                                f"hold, e.g. {absent[0]}")
    return manifest


def _place(staging: Path, home: Path, files: dict[str, str]) -> int:
    """Move the checked files from ``staging`` into the store layout; return the blob bytes."""
    total = 0
    for name in files:
        if name.startswith("blobs/"):
            sha = name.removeprefix("blobs/")
            final = home / "blobs" / "sha256" / sha[:2] / sha
            final.parent.mkdir(parents=True, exist_ok=True)
            total += (staging / name).stat().st_size
            os.replace(staging / name, final)
    os.replace(staging / "portal.db", home / "portal.db")
    return total


def _new_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, innermost first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def restore(source: str | Path, home: str | Path, *, cipher: BlobCipher | None = None) -> BackupInfo:
    """Restore a backup into ``home``, which must be empty or absent.

    Nothing is placed until every member passed its checks; on any failure
    ``home`` is left as it was (empty, or absent with the parents restore made).

    Args:
        cipher: the store's key, needed to check the blobs of an encrypted store.

    Raises:
        InvalidInputError: ``home`` is not empty, or the archive is not a clean backup
            (a member other than manifest.json, portal.db, blobs/<sha256>; a link or
            special file; a blob whose content does not match its name; missing files).
    """
    source, home = Path(source), Path(home)
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise InvalidInputError(f"{home} is not empty; restore into a new, empty directory")
    if not source.is_file():
        raise InvalidInputError(f"no such backup file: {source}")
    created = _new_dirs(home)
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        try:
            with tarfile.open(source, "r:") as tar:
                manifest = _unpack(tar, staging, cipher)
        except tarfile.TarError as exc:
            raise InvalidInputError(f"{source} is not a readable backup archive: {exc}") from exc
        total = _place(staging, home, manifest["files"])
    except BaseException:
        for item in list(home.iterdir()):
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    blobs = sum(1 for n in manifest["files"] if n.startswith("blobs/"))
    return BackupInfo(home, blobs, total, manifest["models"], manifest["versions"])
