"""Run the ingest worker in a resource-limited child process and bring its result back.

The parent never parses the upload: it passes a JSON job to
``python -m portal.ingest._worker`` (own session and process group), forwards
the stage names the child writes to a pipe, kills the whole group at the
wall-clock limit, and turns the child's JSON result (or its death) into a
return value or a :class:`~portal.errors.PortalError`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from portal import errors
from portal.config import MIB, Settings
from portal.errors import InvalidModelError, PortalError, SandboxError

__all__ = ["INGEST_WORKER", "run_worker", "sandbox_limits"]

INGEST_WORKER = "portal.ingest._worker"

_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOG_TAIL = 300


def sandbox_limits(settings: Settings) -> dict[str, int]:
    """The rlimits the child applies to itself, from ``settings``."""
    return {
        "memory_bytes": int(settings.sandbox_memory_bytes),
        "cpu_seconds": int(settings.sandbox_cpu_seconds),
        # a converted model is about as large as the upload; leave room for temporaries
        "file_bytes": int(2 * settings.max_upload_bytes + 64 * MIB),
    }


# what the child inherits from the server's environment: never PORTAL_* (keys, database
# URLs, tokens), since a graph that may read /proc/self/environ could bake them into its output
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "PYTHONHASHSEED", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PORTAL_SANDBOX_LANDLOCK")


def _child_env(scratch: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
    tmp = scratch / "tmp"
    tmp.mkdir(exist_ok=True)
    path = env.get("PYTHONPATH")
    # OpenBLAS spins for minutes in its thread start-up when the address-space
    # limit is tight (measured: 280 s of CPU at 512 MiB); one thread fails fast.
    env.update(
        PYTHONPATH=str(_REPO_ROOT) + (os.pathsep + path if path else ""),
        PYTHONDONTWRITEBYTECODE="1",
        TMPDIR=str(tmp),
        XDG_CACHE_HOME=str(tmp),
        TORCHINDUCTOR_CACHE_DIR=str(tmp),
        HOME=str(tmp),
        USER="portal-sandbox",  # getpass.getuser() without reading /etc/passwd, which the child may not
        LOGNAME="portal-sandbox",
        OPENBLAS_NUM_THREADS="1",
    )
    return env


def _memory_message(settings: Settings, detail: str = "") -> str:
    mib = settings.sandbox_memory_bytes // MIB
    found = f": {detail}" if detail else ""
    return (
        f"the sandbox ran out of memory (limit {mib} MiB of address space){found}; "
        "if the model is genuine, raise PORTAL_SANDBOX_MEMORY_MB"
    )


def _death_message(code: int, settings: Settings, cpu_used: float, log: str) -> str:
    signum = -code
    cpu = settings.sandbox_cpu_seconds
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_used >= cpu):
        return f"the model used more than the sandbox's CPU-time limit of {cpu} s; if it is genuine, raise PORTAL_SANDBOX_CPU_S"
    if signum == signal.SIGXFSZ:
        return "the conversion wrote a file larger than twice the upload limit; raise PORTAL_MAX_UPLOAD_MB if the model is genuine"
    if signum in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS):
        name = signal.Signals(signum).name
        return f"the sandboxed process died ({name}), most likely because " + _memory_message(settings)
    last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), "")[:_LOG_TAIL]
    return f"the sandboxed process exited with status {code} and no result" + (f"; its last output: {last}" if last else "")


def _error_from(payload: dict[str, Any], settings: Settings) -> PortalError:
    if payload.get("limit") == "memory":
        return SandboxError(_memory_message(settings, payload.get("message", "")))
    cls = getattr(errors, str(payload.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, PortalError)):
        cls = InvalidModelError
    return cls(payload.get("message", "the model was refused"))


def _pump(fd: int, deadline: float, progress: Callable[[str], None] | None) -> bool:
    """Forward stage lines until the child closes the pipe; return False at the deadline."""
    poller = select.poll()  # not select.select: a busy server may hold descriptors above FD_SETSIZE
    poller.register(fd, select.POLLIN | select.POLLHUP)
    pending = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return False
        chunk = os.read(fd, 4096)
        if not chunk:
            return True
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if progress is not None and line.strip():
                progress(line.decode("utf-8", "replace").strip())


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _spawn(job_path: Path, write_fd: int, scratch: Path, log_path: Path, worker: str) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", worker, str(job_path), str(write_fd)],
            pass_fds=(write_fd,),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=scratch,
            env=_child_env(scratch),
        )


def run_worker(
    job: dict[str, Any],
    *,
    scratch: Path,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    worker: str = INGEST_WORKER,
    activity: str = "ingesting the model",
    reads: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Run ``job`` in the sandboxed worker; return its result or raise the error it reported.

    ``worker`` is the module run as ``python -m WORKER JOB.json PROGRESS_FD`` (the ingest
    worker by default; :mod:`portal.compress.variants` runs its own); ``activity`` names the work
    in the timeout message. ``reads`` are the files outside ``scratch`` the child may read
    (the upload, the models it measures): the kernel confines it to those, the Python
    installation and ``scratch`` (see :mod:`portal.ingest.confine`).

    Raises:
        SandboxError: the child hit the memory, CPU-time or wall-clock limit, or died.
        PortalError: the child refused the model (same class as raised in the child).
    """
    result_path = scratch / "result.json"
    job_path = scratch / "job.json"
    job = {**job, "scratch": str(scratch), "result": str(result_path), "limits": sandbox_limits(settings),
           "confine": {"read": [str(Path(p).resolve()) for p in reads]}}
    job_path.write_text(json.dumps(job))
    read_fd, write_fd = os.pipe()
    try:
        proc = _spawn(job_path, write_fd, scratch, scratch / "worker.log", worker)
    finally:
        os.close(write_fd)
    deadline = time.monotonic() + settings.sandbox_timeout_seconds
    finished = False
    try:
        finished = _pump(read_fd, deadline, progress)
    finally:
        os.close(read_fd)
        if not finished:
            _kill_group(proc.pid)
        code, cpu_used = _reap(proc, deadline)
        _kill_group(proc.pid)  # grandchildren, if any slipped past the worker's guard
    if not finished:
        raise SandboxError(
            f"{activity} took longer than the sandbox's wall-clock limit of "
            f"{settings.sandbox_timeout_seconds} s and was stopped; if it is genuine, raise PORTAL_SANDBOX_TIMEOUT_S"
        )
    return _read_result(result_path, code, cpu_used, settings, scratch)


def _reap(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int, float]:
    """Wait for the child (killing its group at the deadline); return exit code and CPU seconds."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() >= deadline:
            _kill_group(proc.pid)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)  # the child has closed its pipe and is exiting
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _read_result(path: Path, code: int, cpu_used: float, settings: Settings, scratch: Path) -> dict[str, Any]:
    # the result is written with os.replace, so when it exists it is complete, even if the
    # child then died in interpreter shutdown
    if not path.exists():
        log = (scratch / "worker.log").read_text("utf-8", "replace") if (scratch / "worker.log").exists() else ""
        raise SandboxError(_death_message(code, settings, cpu_used, log))
    payload = json.loads(path.read_text())
    if not payload.get("ok"):
        raise _error_from(payload.get("error", {}), settings)
    return payload
