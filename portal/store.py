"""Content-addressed blob store: immutable files named by their sha256.

Layout under the root: ``blobs/sha256/ab/<hash>`` for blobs and ``tmp/`` for
staging on the same filesystem, so a finished file is ``os.replace``d into place
and a reader never sees a half-written blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .crypto import MAGIC, BlobCipher, IntegrityError
from .errors import NotFoundError, PayloadTooLargeError, PortalError

__all__ = ["BlobInfo", "BlobStore", "receive_stream"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its sha256 hex digest and size in bytes."""

    sha256: str
    size: int


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def receive_stream(
    stream: BinaryIO, dest: Path, *, limit: int, what: str = "upload"
) -> BlobInfo:
    """Copy ``stream`` to ``dest`` in chunks, hashing it; refuse past ``limit`` bytes.

    Raises:
        PayloadTooLargeError: the stream is longer than ``limit`` (``dest`` is removed).
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(dest, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(
                        f"{what} is larger than the limit of {limit / 1024**2:.0f} MiB; "
                        "raise PORTAL_MAX_UPLOAD_MB to accept larger files"
                    )
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return BlobInfo(digest.hexdigest(), size)


class BlobStore:
    """Immutable sha256-addressed files under ``root`` (local filesystem)."""

    def __init__(self, root: Path, *, cipher: BlobCipher | None = None) -> None:
        self.root = Path(root)
        self.cipher = cipher
        self.blob_root = self.root / "blobs" / "sha256"
        self.tmp_root = self.root / "tmp"
        self.blob_root.mkdir(parents=True, exist_ok=True)
        self.tmp_root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Local path of blob ``sha256`` (which may not exist)."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise NotFoundError(f"not a sha256 digest: {sha256!r}")
        return self.blob_root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open blob ``sha256`` for reading."""
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {sha256[:12]} is missing from the store; run `portal fsck`") from None

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's content, decrypted in memory when the store is encrypted."""
        with self.open(sha256) as fh:
            data = fh.read()
        if data.startswith(MAGIC):
            if self.cipher is None:
                raise PortalError(
                    f"blob {sha256[:12]} is encrypted; set PORTAL_ENCRYPTION_KEY to the store's key to read it"
                )
            return self.cipher.decrypt(data, sha256)
        return data

    def is_encrypted(self, sha256: str) -> bool:
        with self.open(sha256) as fh:
            return fh.read(len(MAGIC)) == MAGIC

    def local_path(self, sha256: str) -> Path | None:
        """A path holding the plaintext blob, or None when it is encrypted (use :meth:`read_bytes`)."""
        path = self.path(sha256)
        if not path.is_file():
            raise NotFoundError(f"blob {sha256[:12]} is missing from the store; run `portal fsck`")
        return None if self.is_encrypted(sha256) else path

    def put_file(self, src: Path) -> BlobInfo:
        """Copy ``src`` into the store (atomically, deduplicated) and return its info."""
        with open(src, "rb") as fh:
            return self.put_stream(fh, limit=2**63)

    def put_bytes(self, data: bytes) -> BlobInfo:
        import io

        return self.put_stream(io.BytesIO(data), limit=2**63)

    def put_stream(self, stream: BinaryIO, *, limit: int) -> BlobInfo:
        """Stream into a temp file, fsync, then ``os.replace`` into its final name."""
        tmp = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
        info = receive_stream(stream, tmp, limit=limit)
        return self._commit(tmp, info)

    def adopt(self, src: Path, info: BlobInfo | None = None) -> BlobInfo:
        """Put ``src`` (a file in ``tmp/``) into the store, keeping ``src``.

        A hard link makes it as cheap as a move; ``src`` stays so the caller can
        :meth:`ensure` the blob after committing its row (another process may have
        collected an identical, then unreferenced, blob in between).
        """
        if info is None:
            info = _hash_file(src)
        final = self.path(info.sha256)
        if final.is_file():
            return info
        staged = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
        if self.cipher is not None:
            self._write_encrypted(src.read_bytes(), staged, info.sha256)
            return self._commit(staged, info)
        try:
            os.link(src, staged)
        except OSError:
            shutil.copyfile(src, staged)
        with open(staged, "rb+") as fh:
            os.fsync(fh.fileno())
        return self._commit(staged, info)

    def _write_encrypted(self, plaintext: bytes, dest: Path, sha256: str) -> None:
        assert self.cipher is not None
        with open(dest, "wb") as out:
            out.write(self.cipher.encrypt(plaintext, sha256))
            out.flush()
            os.fsync(out.fileno())

    def rewrite(self, sha256: str, new_cipher: BlobCipher | None) -> None:
        """Re-encrypt one blob with ``new_cipher`` (None: store it in plaintext), atomically."""
        plaintext = self.read_bytes(sha256)
        staged = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
        if new_cipher is None:
            staged.write_bytes(plaintext)
        else:
            with open(staged, "wb") as out:
                out.write(new_cipher.encrypt(plaintext, sha256))
                out.flush()
                os.fsync(out.fileno())
        os.replace(staged, self.path(sha256))

    def ensure(self, src: Path, info: BlobInfo) -> None:
        """Put ``src`` back if blob ``info`` vanished (see :meth:`adopt`)."""
        if not self.exists(info.sha256):
            self.adopt(src, info)

    def _commit(self, tmp: Path, info: BlobInfo) -> BlobInfo:
        final = self.path(info.sha256)
        if final.is_file():
            tmp.unlink(missing_ok=True)
            return info
        if self.cipher is not None and not _starts_with_magic(tmp):
            plain = tmp
            tmp = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
            try:
                self._write_encrypted(plain.read_bytes(), tmp, info.sha256)
            finally:
                plain.unlink(missing_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return info

    def delete(self, sha256: str) -> bool:
        """Remove a blob; return whether it existed."""
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def iter_blobs(self) -> Iterator[str]:
        """Every blob digest in the store."""
        for sub in sorted(self.blob_root.glob("??")):
            for item in sorted(sub.iterdir()):
                if item.is_file() and len(item.name) == 64:
                    yield item.name

    def verify(self, sha256: str) -> bool:
        """Whether the blob's (decrypted) content still hashes to its name."""
        if not _starts_with_magic(self.path(sha256)):
            return _hash_file(self.path(sha256)).sha256 == sha256
        try:
            return hashlib.sha256(self.read_bytes(sha256)).hexdigest() == sha256
        except (IntegrityError, PortalError):
            return False

    @contextlib.contextmanager
    def staging(self, prefix: str = "stage") -> Iterator[Path]:
        """A fresh directory under ``tmp/`` removed on exit, whatever happens."""
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.tmp_root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def make_staging_dir(self, prefix: str = "stage") -> Path:
        """A fresh directory under ``tmp/`` that the caller must remove."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.tmp_root))


def _starts_with_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _hash_file(path: Path) -> BlobInfo:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return BlobInfo(digest.hexdigest(), size)
