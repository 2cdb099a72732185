"""The sandboxed child of variants and measurements: ``python -m portal.compress._worker JOB.json PROGRESS_FD``.

Started by :func:`portal.ingest.sandbox.run_worker` (same limits, same kernel confinement
and guard as ingest: it reads only the models and data it was given, writes only its
scratch folder, has no network).
Four kinds of job:

    compress   build one variant file          (portal.compress.rules.build_variant)
    outputs    load one model, run the evaluation set, report peak memory   (portal.compress.measure.run_outputs)
    timing     load several models, time them interleaved A B A B           (portal.compress.measure.run_timing)
    diff       compare a variant's graph with its parent's                    (portal.compress.graphdiff.run_diff)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portal.errors import PortalError
from portal.ingest._worker import apply_limits, confine_job, install_guard
from portal.ingest.onnx_check import first_line, is_memory_failure


def _handler(kind: str) -> Callable[[dict[str, Any], Callable[[str], None]], dict[str, Any]]:
    if kind == "compress":
        from portal.compress.rules import build_variant

        return build_variant
    if kind == "diff":
        from portal.compress.graphdiff import run_diff

        return run_diff
    from portal.compress import measure

    return {"outputs": measure.run_outputs, "timing": measure.run_timing}[kind]


def _error(exc: BaseException, kind: str) -> dict[str, Any]:
    if is_memory_failure(exc):
        return {"type": "SandboxError", "limit": "memory", "message": first_line(exc)}
    if isinstance(exc, PortalError):
        return {"type": type(exc).__name__, "message": str(exc)}
    what = {"compress": "building the variant", "diff": "comparing the graphs"}.get(kind, "measuring the model")
    message = f"{what} failed unexpectedly ({type(exc).__name__}): {first_line(exc)}"
    return {"type": "InvalidModelError", "message": message}


def main(argv: list[str]) -> int:
    """Run the job in ``argv[1]``; write progress lines to file descriptor ``argv[2]``."""
    job = json.loads(Path(argv[1]).read_text())
    apply_limits(job["limits"])
    fd = int(argv[2])
    confine_job(job)  # ONNX graphs only here: where the kernel cannot confine, the audit hook still holds
    install_guard(Path(job["scratch"]))

    def progress(stage: str) -> None:
        os.write(fd, f"{stage}\n".encode())

    try:
        payload: dict[str, Any] = {"ok": True, **_handler(job["kind"])(job, progress)}
    except Exception as exc:  # noqa: BLE001 - everything travels back as JSON
        payload = {"ok": False, "error": _error(exc, job["kind"])}
    result = Path(job["result"])
    tmp = result.with_name(result.name + ".part")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
