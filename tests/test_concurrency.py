"""Several processes × threads on one store: no lock errors, no failed predictions, state as committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import add_model, softmax_classifier

from portal import Portal

WORKER = Path(__file__).with_name("concurrency_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_and_threads_share_one_store(portal_home, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    env = dict(os.environ, **({"PORTAL_DB_URL": url} if url else {}))
    env.pop("PORTAL_DB_URL", None) if url is None else None
    portal = Portal.open(portal_home, db_url=url)
    add_model(portal, softmax_classifier(seed=1), "shared")
    add_model(portal, softmax_classifier(seed=2), "shared")
    portal.set_alias("shared:1", "prod")
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(portal_home), str(w), "6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
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
    reopened = Portal.open(portal_home, db_url=url)
    for w, result in enumerate(results):
        expected = sorted(set(result["committed"]) - set(result["deleted"]), key=lambda r: int(r.split(":")[1]))
        actual = sorted((v.ref for v in reopened.get_model(f"w{w}").versions), key=lambda r: int(r.split(":")[1]))
        assert actual == expected
    assert reopened.get("shared@prod").version in (1, 2)
    assert reopened.fsck(verify=True, grace_seconds=0).healthy
