"""Ingest an uploaded model: detect its format, convert it to ONNX, check it, run it once.

Everything that parses, converts or runs the upload happens in a sandboxed child
process (see :mod:`portal.ingest.sandbox`); this process only checks the file's
size and moves the finished ``model.onnx`` into place.

    ingest_file(src, workdir, settings=...)            -> IngestReport
      parent: size checks ──> child: detect ─ validate ─ convert ─ check ─ load
                                       "validated"    "converted"      "loaded"

    detect            recognise an upload by its bytes; inspect zip archives without extracting them
    sandbox           run the worker in a resource-limited child process, bring its result back
    confine           kernel confinement of that child: Landlock for files and TCP, seccomp for sockets
    _worker           the sandboxed child itself (``python -m portal.ingest._worker``)
    sklearn_convert   load a skops file with a fixed allowlist, convert it with skl2onnx
    torch_convert     convert TorchScript and ``torch.export`` programs to ONNX
    onnx_check        check an ONNX model against the installed onnxruntime, run it once
    testrun           the test run: zeros, ones, small ranges, other sizes until one runs (else a warning)
    modelinfo         describe an ONNX model: signature, opsets, operators, parameters
    metadata          check and assemble the metadata a user gives at registration
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal.config import Settings
from portal.errors import InvalidInputError, InvalidModelError, PayloadTooLargeError
from portal.ingest.detect import detect_format
from portal.ingest.sandbox import run_worker

__all__ = ["MODEL_FILE", "IngestReport", "detect_format", "ingest_file"]

MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class IngestReport:
    """What ingesting one upload produced."""

    source_format: str  # "onnx" | "onnx-zip" | "torchscript" | "pt2" | "skops"
    model_path: Path  # the converted, self-contained ONNX file, inside workdir
    info: dict[str, Any]  # portal.ingest.modelinfo.describe_model(...) of the final ONNX
    suggested: dict[str, Any] = field(default_factory=dict)  # feature_names, class_labels, task, description
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _check_upload(src: Path, settings: Settings) -> None:
    if not src.is_file():
        raise InvalidInputError(f"the upload {str(src)!r} does not exist or is not a regular file")
    size = src.stat().st_size
    if size == 0:
        raise InvalidModelError("the uploaded file is empty (0 bytes); upload the model file itself")
    if size > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the upload is {size} bytes, over the limit of {settings.max_upload_bytes} bytes; "
            "raise PORTAL_MAX_UPLOAD_MB if it is genuine"
        )


def _normalize_shape(input_shape: Sequence[int] | None) -> list[int] | None:
    if input_shape is None:
        return None
    try:
        dims = [int(d) for d in input_shape]
        valid = bool(dims) and all(d > 0 and d == float(e) for d, e in zip(dims, input_shape))
    except (TypeError, ValueError):
        valid = False
    if not valid or math.prod(dims) > 2**28:
        raise InvalidInputError(
            f"input_shape must be positive integers with at most 2**28 elements, e.g. [1, 3, 224, 224] (not {input_shape!r})"
        )
    return dims


def ingest_file(
    src: Path,
    workdir: Path,
    *,
    settings: Settings,
    input_shape: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Convert and check the upload ``src`` in a sandboxed child; leave ``workdir/model.onnx``.

    Args:
        src: the uploaded file; only its content decides the format.
        workdir: folder that receives ``model.onnx``; created if missing.
        settings: sandbox limits, upload and zip limits.
        input_shape: input shape for PyTorch models whose shape cannot be inferred.
        progress: called with "validated", "converted", "loaded" as the child reaches them.

    Raises:
        InvalidModelError: (and its subclasses) the upload was refused; the message says why.
        SandboxError: the child ran out of memory, CPU time or wall-clock time.
        PayloadTooLargeError: the upload or an archive inside it is over the size limit.
    """
    src, workdir = Path(src), Path(workdir)
    _check_upload(src, settings)
    shape = _normalize_shape(input_shape)
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / MODEL_FILE
    if target.exists():
        raise InvalidInputError(f"{str(target)!r} already exists; ingest into an empty workdir")
    scratch = Path(tempfile.mkdtemp(prefix=".ingest-", dir=workdir)).resolve()
    start = time.perf_counter()
    try:
        job = {
            "src": str(src.resolve()),
            "input_shape": shape,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_zip_ratio": settings.max_zip_ratio,
        }
        result = run_worker(job, scratch=scratch, settings=settings, progress=progress, reads=[src])
        os.replace(scratch / result["model"], target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timings = {**result["timings"], "total": round(time.perf_counter() - start, 4)}
    return IngestReport(
        source_format=result["source_format"],
        model_path=target,
        info=result["info"],
        suggested=result["suggested"],
        warnings=result["warnings"],
        timings=timings,
    )
