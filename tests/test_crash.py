"""Crash safety: SIGKILL a writer at random points, then the store must be consistent."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import softmax_classifier

from portal import Portal

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = int(os.environ.get("PORTAL_CRASH_KILLS", "12"))


def _wait_for_line(proc: subprocess.Popen, prefix: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited early: {proc.stderr.read()}")
    raise AssertionError(f"worker did not print {prefix!r} in time")


def _check_consistent(home: Path, sentinel: np.ndarray) -> None:
    with sqlite3.connect(home / "portal.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    portal = Portal.open(home, check=False)
    try:
        report = portal.fsck(verify=True, repair=True, grace_seconds=0)
        assert report.healthy, report.summary()
        for sha in portal.store.iter_blobs():  # no half-written blob is visible under a final name
            assert portal.store.verify(sha)
        assert [p for p in portal.store.tmp_root.iterdir()] == []
        # the state before the worker started is intact
        assert portal.get("stable@prod").ref == "stable:1"
        np.testing.assert_allclose(portal.predict("stable@prod", {"x": np.ones((1, 4), np.float32)}).outputs["probs"], sentinel)
        if "work" in portal.registry.model_names():
            for version in portal.get_model("work").versions:
                assert portal.store.exists(version.blob_sha)
                portal.predict(version, {"x": np.ones((2, 4), np.float32)})
    finally:
        portal.close()


@pytest.mark.slow
def test_sigkill_during_uploads_alias_moves_deletes_and_variants(portal_home):
    portal = Portal.open(portal_home)
    portal.register(softmax_classifier(seed=42).SerializeToString(), "stable", filename="s.onnx")
    portal.set_alias("stable:1", "prod")
    sentinel = portal.predict("stable@prod", {"x": np.ones((1, 4), np.float32)}).outputs["probs"]
    portal.close()
    rng = random.Random(1234)
    for kill in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(portal_home), str(kill)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_line(proc, "ready", time.monotonic() + 60)
            for _ in range(rng.randint(0, 3)):  # let it finish a few steps first
                _wait_for_line(proc, "step", time.monotonic() + 60)
            time.sleep(rng.uniform(0, 0.4))  # noqa: TID251 - a random kill point, not a wait for a condition
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        _check_consistent(portal_home, sentinel)
