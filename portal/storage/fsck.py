"""Check and repair a store: the registry and the blob files must agree.

A version row is committed only after its blob is durable, so after a crash the
only debris is (a) blobs no row references and (b) staging files in ``tmp/``.
Both are collected once they are older than a grace period, so an upload that
another process is finishing right now is never touched.  A referenced blob is
never deleted: a missing or corrupted one is reported for a human to restore.
With ``verify`` every blob in the store, referenced or not, is re-hashed: a blob
whose content no longer matches its sha256 name is corrupted (the session cache
refuses to load it too, see :mod:`portal.serving.runtime`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NotFoundError
from .registry import Registry
from .store import BlobStore

__all__ = ["FsckReport", "fsck"]

GRACE_SECONDS = 600.0
STAGED_UPLOAD_GRACE_SECONDS = 6 * 3600.0  # an upload waiting for the user's confirmation in the UI


@dataclass
class FsckReport:
    """What fsck found, and what it repaired."""

    blobs: int = 0
    referenced: int = 0
    missing: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    stale_tmp: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.corrupted)

    def summary(self) -> str:
        lines = [
            f"{self.blobs} blobs, {self.referenced} referenced by the registry",
            f"missing blobs (referenced, file absent): {len(self.missing)}",
            f"corrupted blobs (content does not match its hash): {len(self.corrupted)}",
            f"orphaned blobs: {len(self.orphans)}",
            f"stale staging files: {len(self.stale_tmp)}",
            f"removed: {len(self.removed)}",
        ]
        lines += [f"  missing {sha}" for sha in self.missing]
        lines += [f"  corrupted {sha}" for sha in self.corrupted]
        return "\n".join(lines)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _corrupted(store: BlobStore, shas: set[str]) -> list[str]:
    bad = []
    for sha in sorted(shas):
        try:
            if not store.verify(sha):
                bad.append(sha)
        except NotFoundError:
            pass  # deleted since it was listed: nothing left to be corrupt
    return bad


def fsck(
    store: BlobStore,
    registry: Registry,
    *,
    repair: bool = True,
    verify: bool = False,
    grace_seconds: float = GRACE_SECONDS,
) -> FsckReport:
    """Compare blobs with registry rows; with ``repair`` collect debris older than the grace period.

    With ``verify`` every blob is re-hashed and any whose content does not match
    its name is reported in ``corrupted`` (never deleted, unless it is also an orphan).
    """
    now = time.time()
    report = FsckReport()
    referenced = registry.referenced_blobs()
    present = set(store.iter_blobs())
    report.blobs, report.referenced = len(present), len(referenced)
    report.missing = sorted(referenced - present)
    if verify:
        report.corrupted = _corrupted(store, present)
    for sha in sorted(present - referenced):
        written = store.modified(sha)
        # a backend that keeps no timestamps never has its orphans collected (never wrongly either)
        if written is not None and now - written >= grace_seconds:
            report.orphans.append(sha)
    for item in sorted(store.tmp_root.iterdir()):
        grace = grace_seconds
        if item.name.startswith("upload-") and grace_seconds > 0:
            grace = max(grace_seconds, STAGED_UPLOAD_GRACE_SECONDS)
        if _age(item, now) >= grace:
            report.stale_tmp.append(item.name)
    if repair:
        # Re-read the references: a row committed since the first read keeps its blob.
        still_referenced = registry.referenced_blobs()
        for sha in report.orphans:
            if sha not in still_referenced and store.delete(sha):
                report.removed.append(f"blob {sha}")
        for name in report.stale_tmp:
            target = store.tmp_root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            report.removed.append(f"tmp/{name}")
    return report
