"""Where blob bytes live: a small filesystem protocol in fsspec terms, and two backends.

``BlobStore`` names blobs and decides what to write; a ``BlobFS`` only stores
bytes under relative keys (``ab/<sha256>``).  ``LocalBlobFS`` is a directory on
this machine (atomic temp file + fsync + ``os.replace``, directory fsync, files
that onnxruntime can open by path).  ``FsspecBlobFS`` wraps any fsspec
filesystem (``memory://``, ``file://``, ``s3://`` with s3fs installed, ...),
so several machines can share one store.  ``PORTAL_BLOB_URL`` picks it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

__all__ = ["BlobFS", "FsspecBlobFS", "LocalBlobFS", "from_env", "from_url"]

BLOB_URL_ENV = "PORTAL_BLOB_URL"


@runtime_checkable
class BlobFS(Protocol):
    """Bytes under relative ``/``-separated keys; fsspec's method names and meanings.

    ``put_file`` and ``pipe`` are atomic: a reader sees the whole file or none.
    ``rm`` and ``info`` raise ``FileNotFoundError`` for a missing key.
    """

    def open(self, path: str, mode: str = "rb") -> IO[bytes]: ...
    def exists(self, path: str) -> bool: ...
    def isfile(self, path: str) -> bool: ...
    def info(self, path: str) -> dict[str, Any]: ...
    def size(self, path: str) -> int: ...
    def ls(self, path: str = "") -> list[str]: ...
    def find(self, path: str = "") -> list[str]: ...
    def rm(self, path: str) -> None: ...
    def mv(self, src: str, dst: str) -> None: ...
    def makedirs(self, path: str, exist_ok: bool = True) -> None: ...
    def cat(self, path: str) -> bytes: ...
    def pipe(self, path: str, data: bytes) -> None: ...
    def put_file(self, lpath: str | Path, rpath: str, *, move: bool = False) -> None: ...
    def local_path(self, path: str) -> str | None: ...


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


class LocalBlobFS:
    """Keys as files under ``root`` on this machine, written atomically and durably."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobFS({str(self.root)!r})"

    def _path(self, path: str) -> Path:
        return self.root / path if path else self.root

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        """A plain file object (not atomic for writing: use :meth:`pipe` / :meth:`put_file`)."""
        return open(self._path(path), mode)  # noqa: SIM115 - the caller closes it

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def isfile(self, path: str) -> bool:
        return self._path(path).is_file()

    def info(self, path: str) -> dict[str, Any]:
        stat = self._path(path).stat()
        kind = "directory" if self._path(path).is_dir() else "file"
        return {"name": path, "size": stat.st_size, "type": kind, "mtime": stat.st_mtime}

    def size(self, path: str) -> int:
        return self._path(path).stat().st_size

    def ls(self, path: str = "") -> list[str]:
        base = self._path(path)
        return sorted(f"{path}/{p.name}" if path else p.name for p in base.iterdir())

    def find(self, path: str = "") -> list[str]:
        base = self._path(path)
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def rm(self, path: str) -> None:
        self._path(path).unlink()

    def mv(self, src: str, dst: str) -> None:
        target = self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(src), target)
        _fsync_dir(target.parent)

    def makedirs(self, path: str, exist_ok: bool = True) -> None:
        self._path(path).mkdir(parents=True, exist_ok=exist_ok)

    def cat(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def pipe(self, path: str, data: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.parent / f".{target.name}.{uuid.uuid4().hex}.part"
        try:
            with open(staged, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def put_file(self, lpath: str | Path, rpath: str, *, move: bool = False) -> None:
        """Put local file ``lpath`` at ``rpath``; with ``move`` it is renamed into place (same filesystem)."""
        target = self._path(rpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(lpath, target)
        else:
            staged = target.parent / f".{target.name}.{uuid.uuid4().hex}.part"
            try:
                shutil.copyfile(lpath, staged)
                _fsync_file(staged)
                os.replace(staged, target)
            finally:
                staged.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def local_path(self, path: str) -> str | None:
        return str(self._path(path))


class FsspecBlobFS:
    """Keys under ``root`` on any fsspec filesystem.

    Writes go to a ``.part`` key and are moved into place, so readers never see a
    partial file (on object stores the upload is atomic anyway).  ``local_path``
    is a real path only for fsspec's local filesystem.
    """

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self._local = "file" in _protocols(fs)
        with contextlib.suppress(OSError, NotImplementedError):
            fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"FsspecBlobFS({type(self.fs).__name__}, {self.root!r})"

    def _path(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def _key(self, full: str) -> str:
        full = full.rstrip("/")
        prefix = self.root.lstrip("/") + "/"
        stripped = full.lstrip("/")
        return stripped[len(prefix):] if stripped.startswith(prefix) else stripped

    def open(self, path: str, mode: str = "rb") -> IO[bytes]:
        return self.fs.open(self._path(path), mode)  # type: ignore[no-any-return]

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._path(path)))

    def isfile(self, path: str) -> bool:
        return bool(self.fs.isfile(self._path(path)))

    def info(self, path: str) -> dict[str, Any]:
        return dict(self.fs.info(self._path(path)))

    def size(self, path: str) -> int:
        return int(self.fs.size(self._path(path)))

    def ls(self, path: str = "") -> list[str]:
        return sorted(self._key(p) for p in self.fs.ls(self._path(path), detail=False))

    def find(self, path: str = "") -> list[str]:
        if not self.fs.exists(self._path(path)):
            return []
        return sorted(self._key(p) for p in self.fs.find(self._path(path)))

    def rm(self, path: str) -> None:
        if not self.fs.isfile(self._path(path)):
            raise FileNotFoundError(path)
        self.fs.rm(self._path(path))

    def mv(self, src: str, dst: str) -> None:
        self._parent(dst)
        self.fs.mv(self._path(src), self._path(dst))

    def makedirs(self, path: str, exist_ok: bool = True) -> None:
        self.fs.makedirs(self._path(path), exist_ok=exist_ok)

    def cat(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(self._path(path)))

    def pipe(self, path: str, data: bytes) -> None:
        staged = f"{path}.{uuid.uuid4().hex}.part"
        self._parent(path)
        self.fs.pipe_file(self._path(staged), data)
        self._into_place(staged, path)

    def put_file(self, lpath: str | Path, rpath: str, *, move: bool = False) -> None:
        staged = f"{rpath}.{uuid.uuid4().hex}.part"
        self._parent(rpath)
        self.fs.put_file(str(lpath), self._path(staged))
        self._into_place(staged, rpath)
        if move:
            Path(lpath).unlink(missing_ok=True)

    def local_path(self, path: str) -> str | None:
        return self._path(path) if self._local else None

    def _parent(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent:
            with contextlib.suppress(OSError, NotImplementedError):
                self.fs.makedirs(self._path(parent), exist_ok=True)

    def _into_place(self, staged: str, path: str) -> None:
        try:
            self.fs.mv(self._path(staged), self._path(path))
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.rm(self._path(staged))
            raise


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = getattr(fs, "protocol", ())
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def from_url(url: str) -> FsspecBlobFS:
    """An fsspec filesystem from a URL such as ``memory://portal-blobs`` or ``file:///shared/blobs``.

    Raises:
        ValueError: fsspec does not know the URL's protocol (a missing optional package, say).
    """
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{BLOB_URL_ENV}={url!r} cannot be opened: {exc}") from exc
    return FsspecBlobFS(fs, root)


def from_env(default_root: str | Path, env: dict[str, str] | None = None) -> BlobFS:
    """``PORTAL_BLOB_URL``'s filesystem when it is set, else a ``LocalBlobFS`` at ``default_root``."""
    url = (os.environ if env is None else env).get(BLOB_URL_ENV, "").strip()
    return from_url(url) if url else LocalBlobFS(default_root)
