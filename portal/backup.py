"""Consistent backups of a running store, and restore into an empty home.

A backup is an uncompressed tar holding ``portal.db`` (an SQLite online-backup
snapshot, consistent even while other processes write), every blob that the
snapshot references under ``blobs/<sha256>``, and ``manifest.json`` with the
sha256 of every member.  Blobs are immutable and named by their hash, so the
only race is a blob deleted between the snapshot and the copy: it is then
retried from a fresh snapshot.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInputError, NotFoundError, PortalError

__all__ = ["BackupInfo", "backup", "restore"]

_FORMAT = "model-portal-backup/1"
_CHUNK = 1 << 20


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


def _sqlite_path(portal) -> Path:
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
    with sqlite3.connect(dest) as out:
        rows = out.execute("SELECT blob_sha, reference_sha FROM versions").fetchall()
        models = out.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    return {sha for row in rows for sha in row if sha}, models, len(rows)


def _link_blobs(store, shas: set[str], into: Path) -> set[str]:
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


def backup(portal, dest: str | Path, *, attempts: int = 3) -> BackupInfo:
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


def _read_manifest(tar: tarfile.TarFile) -> dict:
    try:
        member = tar.getmember("manifest.json")
        manifest = json.loads(tar.extractfile(member).read())
    except (KeyError, ValueError, AttributeError) as exc:
        raise InvalidInputError("not a Model Portal backup (no readable manifest.json)") from exc
    if manifest.get("format") != _FORMAT:
        raise InvalidInputError(f"unsupported backup format {manifest.get('format')!r} (expected {_FORMAT})")
    return manifest


def restore(source: str | Path, home: str | Path) -> BackupInfo:
    """Restore a backup into ``home``, which must be empty; every file is verified by its hash."""
    source, home = Path(source), Path(home)
    if home.exists() and any(home.iterdir()):
        raise InvalidInputError(f"{home} is not empty; restore into a new, empty directory")
    if not source.is_file():
        raise InvalidInputError(f"no such backup file: {source}")
    created = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        with tarfile.open(source, "r:") as tar:
            manifest = _read_manifest(tar)
            expected = manifest["files"]
            for member in tar.getmembers():
                if member.name == "manifest.json":
                    continue
                if member.name not in expected or not member.isfile():
                    raise InvalidInputError(f"unexpected member {member.name!r} in the backup; refusing to restore")
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                if _sha256(target) != expected[member.name]:
                    raise InvalidInputError(f"{member.name} in the backup is corrupted (hash mismatch)")
            absent = [name for name in expected if not (staging / name).is_file()]
            if absent:
                raise InvalidInputError(f"the backup is incomplete: {len(absent)} file(s) missing, e.g. {absent[0]}")
        total = 0
        for name in expected:
            if name.startswith("blobs/"):
                sha = name.split("/", 1)[1]
                final = home / "blobs" / "sha256" / sha[:2] / sha
                final.parent.mkdir(parents=True, exist_ok=True)
                total += (staging / name).stat().st_size
                os.replace(staging / name, final)
        os.replace(staging / "portal.db", home / "portal.db")
    except BaseException:
        # leave ``home`` as it was: empty (or absent, if we created it)
        for item in list(home.iterdir()):
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        if created:
            home.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    blobs = sum(1 for n in expected if n.startswith("blobs/"))
    return BackupInfo(home, blobs, total, manifest.get("models", 0), manifest.get("versions", 0))
