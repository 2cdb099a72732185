"""Kernel confinement for the sandboxed children: Landlock for files and TCP, seccomp for sockets.

A child that runs an uploaded graph (ingest, variants, measurements) calls :func:`confine`
before it touches the upload. From then on the kernel, not Python, decides what the
process may do, whatever code runs in it (C++ aten ops included):

* **files** (Landlock): read only the paths granted (the staged upload, the Python
  installation, the ``portal`` package, the system's shared libraries and a few device and
  ``/proc`` files the libraries read); write, create and delete only inside the scratch
  folder; execute nothing (no ``execve`` of any file);
* **network**: ``socket()`` fails with EACCES (seccomp filter), so no TCP, UDP or Unix
  socket can be opened, and Landlock (ABI >= 4) refuses TCP bind and connect as well;
* **other processes**: Landlock already refuses ptrace of (and ``/proc/PID/mem`` or
  ``environ`` access to) processes outside the domain; ABI >= 6 also scopes signals and
  abstract Unix sockets.

Both are unprivileged (``no_new_privs``), need no package and work as root and as any
user. ``PORTAL_SANDBOX_LANDLOCK=off`` declares confinement unavailable (a kernel where it
misbehaves, or a test of the refusal path): it only ever makes ingest stricter, because
code-running formats are then refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Confinement", "ConfinementError", "confine", "landlock_abi", "system_read_paths"]

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# LANDLOCK_ACCESS_FS_* by the ABI that introduced them
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_READ = _READ_FILE | _READ_DIR
_SYSTEM_DIRS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo")
_SYSTEM_FILES = (
    "/etc/ld.so.cache", "/etc/localtime",  # not /etc/passwd: the child's USER and HOME are set instead
    "/dev/urandom", "/dev/random", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
)
_SYSTEM_READ_DIRS = ("/sys/devices/system/cpu", "/sys/fs/cgroup")

# seccomp: (AUDIT_ARCH, socket, io_uring_setup); io_uring could open sockets past the filter
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}
_X32_BIT = 0x40000000


class ConfinementError(OSError):
    """The kernel could not confine this process (no Landlock, or it refused a rule)."""


@dataclass(frozen=True)
class Confinement:
    """What :func:`confine` put in place."""

    landlock_abi: int
    network: str  # "seccomp+landlock", "seccomp" or "landlock-tcp"

    def describe(self) -> str:
        return f"Landlock ABI {self.landlock_abi}, network blocked by {self.network}"


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers, 0 when it offers none (or it is switched off)."""
    if os.environ.get("PORTAL_SANDBOX_LANDLOCK", "").strip().lower() in ("off", "0", "false", "no"):
        return 0
    if sys.platform != "linux":
        return 0
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def system_read_paths() -> list[Path]:
    """What Python and its libraries read besides their own files: shared libraries, a few /etc, /dev, /proc files."""
    import portal

    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths.add(Path(portal.__file__).resolve().parent)
    paths.update(Path(p) for p in (*_SYSTEM_DIRS, *_SYSTEM_FILES, *_SYSTEM_READ_DIRS))
    paths.add(Path(f"/proc/{os.getpid()}"))  # /proc/self: the process's own maps, status, fds
    return sorted(p for p in paths if p.exists())


def _fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise ConfinementError(code, f"{what} failed: {os.strerror(code)}")
    return result


def _add_path(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not path.is_dir():
            rights &= _FILE_ONLY
        rule = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr is packed
        _check(libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)),
               f"adding a Landlock rule for {path}")
    finally:
        os.close(fd)


def _landlock(libc: ctypes.CDLL, abi: int, read: Iterable[Path], write: Iterable[Path]) -> None:
    handled_fs = _fs_rights(abi)
    handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    # struct landlock_ruleset_attr grew a field at ABI 4 and 6; the kernel takes the size we pass
    fields = [handled_fs, *([handled_net] if abi >= 4 else []), *([scoped] if abi >= 6 else [])]
    attr = struct.pack(f"={len(fields)}Q", *fields)
    ruleset = _check(libc.syscall(_SYS_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
                     "creating the Landlock ruleset")
    try:
        for path in read:
            _add_path(libc, ruleset, Path(path), _READ)
        _add_path(libc, ruleset, Path(os.devnull), _READ_FILE | _WRITE_FILE | _TRUNCATE)
        for path in write:
            _add_path(libc, ruleset, Path(path), handled_fs & ~_EXECUTE)
        _check(libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _seccomp(libc: ctypes.CDLL) -> bool:
    """Make socket() and io_uring_setup() fail with EACCES; False where the architecture is not known."""
    known = _SECCOMP_ARCH.get(platform.machine())
    if known is None:
        return False
    arch, socket_nr, uring_nr = known
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    deny = 0x00050000 | errno.EACCES  # SECCOMP_RET_ERRNO
    program = b"".join([
        _bpf(ld, 4),                   # 0: seccomp_data.arch
        _bpf(jeq, arch, 0, 5),         # 1: a foreign ABI (int 0x80) -> deny
        _bpf(ld, 0),                   # 2: seccomp_data.nr
        _bpf(jge, _X32_BIT, 3, 0),     # 3: x32 syscalls -> deny
        _bpf(jeq, socket_nr, 2, 0),    # 4
        _bpf(jeq, uring_nr, 1, 0),     # 5
        _bpf(ret, 0x7FFF0000),         # 6: SECCOMP_RET_ALLOW
        _bpf(ret, deny),               # 7
    ])
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "installing the seccomp filter")
    return True


def confine(*, read: Iterable[Path], write: Iterable[Path]) -> Confinement:
    """Restrict this process, for good, to reading ``read`` (+ the system's) and writing ``write``.

    Raises:
        ConfinementError: the kernel offers no Landlock, or refused to apply it; nothing
            has been restricted partially in a way the caller could rely on.
    """
    abi = landlock_abi()
    if abi < 1:
        raise ConfinementError(errno.ENOSYS, "this kernel offers no Landlock (or PORTAL_SANDBOX_LANDLOCK=off)")
    libc = _libc()
    # both Landlock and seccomp need it from an unprivileged process; set once, it cannot be undone
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _landlock(libc, abi, [*system_read_paths(), *read], write)
    sockets = _seccomp(libc)
    network = "seccomp+landlock" if sockets and abi >= 4 else ("seccomp" if sockets else "landlock-tcp")
    if not sockets and abi < 4:
        raise ConfinementError(errno.ENOSYS, "neither seccomp nor Landlock ABI >= 4 can block the network here")
    return Confinement(landlock_abi=abi, network=network)
