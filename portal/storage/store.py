"""Content-addressed blob store: immutable files named by their sha256.

Layout under the root: ``blobs/sha256/ab/<hash>`` for blobs and ``tmp/`` for
staging on the same filesystem, so a finished file is ``os.replace``d into place
and a reader never sees a half-written blob.  The blob bytes go through a
:class:`~portal.storage.blobfs.BlobFS`: that directory by default, or any fsspec
filesystem named by ``PORTAL_BLOB_URL`` (staging stays in the local ``tmp/``).
:meth:`BlobStore.read_bytes` checks the content against its name, so a blob
changed where it is stored is refused, never used.
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

from . import blobfs
from .crypto import MAGIC, BlobCipher, IntegrityError
from ..errors import CorruptBlobError, NotFoundError, PayloadTooLargeError, PortalError

__all__ = ["BlobInfo", "BlobStore", "receive_stream"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its sha256 hex digest and size in bytes."""

    sha256: str
    size: int


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


def _key(sha256: str) -> str:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise NotFoundError(f"not a sha256 digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256}"


def _missing(sha256: str) -> NotFoundError:
    return NotFoundError(f"blob {sha256[:12]} is missing from the store; run `portal fsck`")


class BlobStore:
    """Immutable sha256-addressed blobs; staging under ``root/tmp`` on this machine.

    Args:
        root: the store's local directory (``PORTAL_HOME``).
        cipher: encrypt blobs at rest.
        fs: where blob bytes live (default: ``PORTAL_BLOB_URL``'s fsspec filesystem
            when set, else ``root/blobs/sha256`` on this machine).
    """

    def __init__(self, root: Path, *, cipher: BlobCipher | None = None, fs: blobfs.BlobFS | None = None) -> None:
        self.root = Path(root)
        self.cipher = cipher
        self.blob_root = self.root / "blobs" / "sha256"
        self.tmp_root = self.root / "tmp"
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        self.fs = fs if fs is not None else blobfs.from_env(self.blob_root)

    def path(self, sha256: str) -> Path:
        """Path of blob ``sha256`` in the local layout (which may not exist; see :meth:`local_path`)."""
        local = self.fs.local_path(_key(sha256))
        return Path(local) if local is not None else self.blob_root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.fs.isfile(_key(sha256))

    def open(self, sha256: str) -> BinaryIO:
        """Open blob ``sha256`` for reading."""
        try:
            return self.fs.open(_key(sha256), "rb")  # type: ignore[return-value]
        except FileNotFoundError:
            raise _missing(sha256) from None

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's content (decrypted in memory on an encrypted store), checked against its name.

        Raises:
            CorruptBlobError: the content no longer hashes to ``sha256``.
        """
        data = self._plaintext(sha256)
        # GCM already refuses a tampered ciphertext; the hash also catches a blob
        # re-encrypted under this name by someone holding the key.
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptBlobError.for_blob(sha256)
        return data

    def _plaintext(self, sha256: str) -> bytes:
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

    def modified(self, sha256: str) -> float | None:
        """When blob ``sha256`` was written (epoch seconds), or None if the backend does not say."""
        key = _key(sha256)
        local = self.fs.local_path(key)
        if local is not None:
            return os.stat(local).st_mtime
        info = self.fs.info(key)
        for field in ("mtime", "created", "LastModified", "last_modified", "updated"):
            value = info.get(field)
            if value is None:
                continue
            if hasattr(value, "timestamp"):
                return float(value.timestamp())
            with contextlib.suppress(TypeError, ValueError):
                return float(value)
        return None

    def copy_raw(self, sha256: str, dest: Path) -> None:
        """Copy blob ``sha256`` as stored (still encrypted on an encrypted store) to ``dest``:
        a hard link when both are on this filesystem."""
        local = self.fs.local_path(_key(sha256))
        if local is not None:
            try:
                os.link(local, dest)
                return
            except FileNotFoundError:
                raise _missing(sha256) from None
            except OSError:
                shutil.copyfile(local, dest)
                return
        with self.open(sha256) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)

    def local_path(self, sha256: str) -> Path | None:
        """A local path holding the plaintext blob, or None when it is encrypted or not on
        this machine's filesystem (use :meth:`read_bytes`)."""
        key = _key(sha256)
        if not self.fs.isfile(key):
            raise _missing(sha256)
        local = self.fs.local_path(key)
        return None if local is None or self.is_encrypted(sha256) else Path(local)

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
        if self.exists(info.sha256):
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
        plaintext = self._plaintext(sha256)  # unchecked: rotation moves bytes, fsck --verify judges them
        staged = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
        try:
            with open(staged, "wb") as out:
                out.write(plaintext if new_cipher is None else new_cipher.encrypt(plaintext, sha256))
                out.flush()
                os.fsync(out.fileno())
            self.fs.put_file(staged, _key(sha256), move=True)
        finally:
            staged.unlink(missing_ok=True)

    def ensure(self, src: Path, info: BlobInfo) -> None:
        """Put ``src`` back if blob ``info`` vanished (see :meth:`adopt`)."""
        if not self.exists(info.sha256):
            self.adopt(src, info)

    def _commit(self, tmp: Path, info: BlobInfo) -> BlobInfo:
        if self.exists(info.sha256):
            tmp.unlink(missing_ok=True)
            return info
        if self.cipher is not None and not _starts_with_magic(tmp):
            plain = tmp
            tmp = self.tmp_root / f"blob-{uuid.uuid4().hex}.part"
            try:
                self._write_encrypted(plain.read_bytes(), tmp, info.sha256)
            finally:
                plain.unlink(missing_ok=True)
        try:
            self.fs.put_file(tmp, _key(info.sha256), move=True)  # locally: os.replace + directory fsync
        finally:
            tmp.unlink(missing_ok=True)
        return info

    def delete(self, sha256: str) -> bool:
        """Remove a blob; return whether it existed."""
        try:
            self.fs.rm(_key(sha256))
            return True
        except FileNotFoundError:
            return False

    def iter_blobs(self) -> Iterator[str]:
        """Every blob digest in the store."""
        for key in self.fs.find():
            sub, _, name = key.rpartition("/")
            if len(sub) == 2 and len(name) == 64 and name.startswith(sub):
                yield name

    def verify(self, sha256: str) -> bool:
        """Whether the blob's (decrypted) content still hashes to its name."""
        if not self.is_encrypted(sha256):
            with self.open(sha256) as fh:
                return _hash_stream(fh).sha256 == sha256
        try:
            self.read_bytes(sha256)
        except (IntegrityError, PortalError):
            return False
        return True

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
    with open(path, "rb") as fh:
        return _hash_stream(fh)


def _hash_stream(stream: BinaryIO) -> BlobInfo:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return BlobInfo(digest.hexdigest(), size)
