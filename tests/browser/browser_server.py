"""A real ``streamlit run streamlit_app.py`` on 127.0.0.1, for the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def _copy_output(proc: subprocess.Popen[bytes], log: Path, listening: threading.Event) -> None:
    """Copy the server's output to ``log``; set ``listening`` once it prints its URL."""
    assert proc.stdout is not None
    with open(log, "wb") as sink:
        for line in proc.stdout:
            sink.write(line)
            sink.flush()
            if b"URL:" in line:
                listening.set()
    listening.set()  # exited: let the waiter look at the return code


class Server:
    """``streamlit run streamlit_app.py`` on 127.0.0.1 with its own PORTAL_HOME."""

    def __init__(self, home: Path, log: Path, *, auth: str = "off") -> None:
        self.home, self.log = home, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"),
            "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]
        # tests not about accounts run in single-user mode; the sign-in test passes auth="on"
        env = {**os.environ, "PORTAL_HOME": str(home), "PYTHONUNBUFFERED": "1", "PORTAL_AUTH": auth}
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        listening = threading.Event()
        self._copier = threading.Thread(target=_copy_output, args=(self.proc, log, listening), daemon=True)
        self._copier.start()
        try:
            self._wait_healthy(listening, deadline_s=60)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, listening: threading.Event, *, deadline_s: float) -> None:
        """Block until the server says it listens, then until /_stcore/health answers ok."""
        deadline = time.monotonic() + deadline_s
        if not listening.wait(timeout=deadline_s) or self.proc.poll() is not None:
            raise RuntimeError(f"streamlit did not start (exit {self.proc.poll()}):\n{self.log.read_text()[-3000:]}")
        while not _healthy(self.url):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"streamlit is not healthy after {deadline_s} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._copier.join(timeout=15)
