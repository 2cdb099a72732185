"""Several processes × threads on one store: no lock errors, no failed predictions, state as committed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import add_model, softmax_classifier

from portal import Portal

WORKER = Path(__file__).with_name("concurrency_worker.py")


@pytest.mark.slow
def test_processes_and_threads_share_one_store(portal_home):
    portal = Portal.open(portal_home)
    add_model(portal, softmax_classifier(seed=1), "shared")
    add_model(portal, softmax_classifier(seed=2), "shared")
    portal.set_alias("shared:1", "prod")
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(portal_home), str(w), "6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert result["errors"] == []
        assert not any("locked" in e for e in result["errors"])
    reopened = Portal.open(portal_home)
    for w, result in enumerate(results):
        expected = sorted(set(result["committed"]) - set(result["deleted"]), key=lambda r: int(r.split(":")[1]))
        actual = sorted((v.ref for v in reopened.get_model(f"w{w}").versions), key=lambda r: int(r.split(":")[1]))
        assert actual == expected
    assert reopened.get("shared@prod").version in (1, 2)
    assert reopened.fsck(verify=True, grace_seconds=0).healthy
