"""The sandboxed child: ``python -m portal.ingest._worker JOB.json PROGRESS_FD``.

It limits its own resources and asks the kernel to confine it (Landlock + seccomp, see
:mod:`portal.ingest.confine`: read only the upload and the libraries, write only the
scratch folder, no network, no exec) before touching the upload; an audit hook also
blocks process creation and writes outside scratch (defence in depth, not the boundary).
Then it detects the format, converts and checks the model, runs it once, and writes
the result as JSON. PyTorch formats run the model's own code during conversion, so
they are refused where the kernel cannot confine the child. Errors travel as
``{"type", "message"}``; the parent re-raises them.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx

from portal.config import Settings
from portal.errors import InvalidModelError, PortalError, UnsupportedFormatError
from portal.ingest import onnx_check
from portal.ingest.confine import Confinement, ConfinementError, confine
from portal.ingest.detect import SAFE_EXPORT_HINT, check_zip, extract_zip, parse_onnx, sniff
from portal.ingest.onnx_check import Conversion, first_line
from portal.ingest.modelinfo import describe_model
from portal.ingest.testrun import TEST_RUN_KEY, run_synthetic, untested_warning

MODEL_FILE = "model.onnx"
_SPAWN_EVENTS = frozenset(
    {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "pty.spawn"}
)
_PATH_EVENTS = frozenset(
    {"os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree"}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REFUSALS = {
    "empty": "the uploaded file is empty (0 bytes); upload the model file itself",
    "pickle": f"the file is a Python pickle, which can run arbitrary code when loaded and is never opened here; {SAFE_EXPORT_HINT}",
    "torch-pickle": f"the file is a torch.save checkpoint (a pickle: unsafe, and a state_dict has no architecture); {SAFE_EXPORT_HINT}",
    "compressed": f"the file is compressed (gzip/bz2/xz/zstd, e.g. a compressed joblib pickle); {SAFE_EXPORT_HINT}",
    "hdf5": "the file is HDF5 (e.g. a Keras .h5 model), which is not accepted; export the model to ONNX (tf2onnx)",
    "gguf": "the file is a GGUF language-model file, which is not accepted; export the model to ONNX",
    "onnx-corrupt": "the file is not a recognised model: it starts like an ONNX file but cannot be parsed, so it is truncated or corrupt; upload it again",
    "text": "the file is text, not a recognised model; upload a binary ONNX (.onnx), .pt2, TorchScript or skops file",
    "zip": "the zip archive is not a TorchScript, .pt2, skops or ONNX bundle (a .zip holding exactly one .onnx plus its data files)",
    "unknown": "the file is not a recognised model (accepted: ONNX, .zip ONNX bundle, TorchScript, torch.export .pt2, skops)",
}
_ZIP_FORMATS = frozenset({"zip-onnx", "torchscript", "pt2", "skops", "torch-pickle", "zip"})
_SOURCE_FORMATS = {"onnx": "onnx", "zip-onnx": "onnx-zip", "torchscript": "torchscript", "pt2": "pt2", "skops": "skops"}


class _Context:
    """Where one job reads and writes, and how it reports progress."""

    def __init__(self, job: dict[str, Any], progress_fd: int) -> None:
        self.src = Path(job["src"])
        self.scratch = Path(job["scratch"])
        self.out = self.scratch / MODEL_FILE
        self.input_shape: list[int] | None = job.get("input_shape")
        self.settings = Settings(max_upload_bytes=job["max_upload_bytes"], max_zip_ratio=job["max_zip_ratio"])
        self.timings: dict[str, float] = {}
        self.confinement: Confinement | None = None
        self.unconfined_reason = ""
        self._progress_fd = progress_fd

    def progress(self, stage: str) -> None:
        os.write(self._progress_fd, f"{stage}\n".encode())

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 4)


def _cap(which: int, soft: int, hard: int) -> None:
    _current, limit = resource.getrlimit(which)
    if limit != resource.RLIM_INFINITY:
        soft, hard = min(soft, limit), min(hard, limit)
    resource.setrlimit(which, (soft, hard))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the portal process dies (e.g. killed mid-upload)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass  # not Linux: the wall-clock limit still ends it


def apply_limits(limits: dict[str, int]) -> None:
    """Cap address space, CPU time (SIGXCPU at the limit, SIGKILL 5 s later), file size, core dumps."""
    _die_with_parent()
    _cap(resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"])
    _cap(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 5)
    _cap(resource.RLIMIT_FSIZE, limits["file_bytes"], limits["file_bytes"])
    _cap(resource.RLIMIT_CORE, 0, 0)


def confine_job(job: dict[str, Any]) -> tuple[Confinement | None, str]:
    """Confine this process to the job's files by the kernel; return what holds, or why nothing does."""
    reads = [Path(p) for p in job.get("confine", {}).get("read", [])]
    try:
        return confine(read=reads, write=[Path(job["scratch"])]), ""
    except ConfinementError as exc:
        return None, str(exc)


def install_guard(scratch: Path) -> None:
    """Refuse process creation and file writes outside ``scratch`` from here on."""
    root = os.path.realpath(scratch) + os.sep

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True
        return os.path.realpath(os.fsdecode(path)).startswith(root) or os.fsdecode(path) == os.devnull

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in _SPAWN_EVENTS:
            raise PermissionError(f"the ingest sandbox does not allow {event}")
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            if writing and not inside(path):
                raise PermissionError(f"the ingest sandbox does not allow writing {path!r}")
        elif event in _PATH_EVENTS or event == "os.rename":
            for path in args[: 2 if event == "os.rename" else 1]:
                if not inside(path):
                    raise PermissionError(f"the ingest sandbox does not allow {event} on {path!r}")

    sys.addaudithook(hook)


def _onnx_suggested(model: onnx.ModelProto) -> dict[str, Any]:
    props = {p.key: p.value for p in model.metadata_props}
    suggested: dict[str, Any] = {}
    for key in ("feature_names", "class_labels"):
        if key in props:
            try:
                value = json.loads(props[key])
            except ValueError:
                value = [v.strip() for v in props[key].split(",")]
            if isinstance(value, list):
                suggested[key] = [str(v) for v in value]
    if props.get("task") in ("classification", "regression", "other"):
        suggested["task"] = props["task"]
    if model.doc_string.strip():
        suggested["description"] = model.doc_string.strip()[:2000]
    return suggested


def _accepts_batch(path: Path) -> bool:
    """Whether the converted model runs with a batch of 2 and answers with batches of 2."""
    signature = describe_model(onnx.load(str(path)))["signature"]
    if any(not spec.get("shape") or isinstance(spec["shape"][0], int) for spec in signature["inputs"]):
        return False
    try:
        outputs = onnx_check.run_once(path, signature, batch=2)
    except InvalidModelError:
        return False
    return all(o.ndim == 0 or o.shape[0] == 2 for o in outputs)


def _from_onnx(ctx: _Context, model: onnx.ModelProto) -> tuple[onnx.ModelProto, Conversion]:
    with ctx.timed("validate"):
        onnx_check.check_onnx(model, onnx_check.runtime_limits())
    ctx.progress("validated")
    return model, Conversion(suggested=_onnx_suggested(model))


def _bundle_model(ctx: _Context) -> tuple[onnx.ModelProto, int]:
    """Extract the checked bundle into scratch, inline its external data; return model and file count."""
    root = ctx.scratch / "bundle"
    root.mkdir()
    extract_zip(ctx.src, root, settings=ctx.settings)
    found = [p for p in root.rglob("*") if p.suffix.lower() == ".onnx" and p.is_file()]
    model = parse_onnx(found[0].read_bytes()) if len(found) == 1 else None
    if model is None:
        raise InvalidModelError("the .onnx file inside the zip bundle is not a valid ONNX model")
    onnx_check.check_versions(model, onnx_check.runtime_limits())
    count = onnx_check.inline_external_data(model, found[0].parent, root)
    return model, count


def _from_bundle(ctx: _Context, _model: None) -> tuple[onnx.ModelProto, Conversion]:
    with ctx.timed("validate"):
        model, count = _bundle_model(ctx)
        onnx_check.check_onnx(model, onnx_check.runtime_limits())
    ctx.progress("validated")
    note = [f"external data from {count} file(s) inlined into one self-contained model"] if count else []
    return model, Conversion(warnings=note, suggested=_onnx_suggested(model))


def _import_torch_convert() -> Any:
    """Import torch only for PyTorch uploads: it maps ~3.3 GiB of address space on import."""
    try:
        from portal.ingest import torch_convert
    except (ImportError, OSError) as exc:
        if onnx_check.is_memory_failure(exc):
            raise MemoryError(
                f"importing torch failed ({first_line(exc)}); converting a PyTorch model needs about 4 GiB"
            ) from exc
        raise
    return torch_convert


def _from_torch(ctx: _Context, _model: None, exported: bool) -> tuple[onnx.ModelProto, Conversion]:
    if ctx.confinement is None:
        raise UnsupportedFormatError(
            "PyTorch uploads (TorchScript, .pt2) run the model's own code while they are converted, and this "
            f"server cannot confine that code by the kernel ({ctx.unconfined_reason}); export the model to ONNX "
            "yourself (torch.onnx.export) and upload the .onnx file, or ask an admin to run the portal on "
            "Linux >= 5.13 with Landlock enabled"
        )
    ctx.progress("validated")
    torch_convert = _import_torch_convert()

    convert = torch_convert.convert_exported_program if exported else torch_convert.convert_torchscript
    with ctx.timed("convert"):
        conversion = convert(ctx.src, ctx.out, input_shape=ctx.input_shape, check=_accepts_batch)
    with ctx.timed("check"):
        model = onnx.load(str(ctx.out))
        onnx_check.fit_ir_version(model, onnx_check.runtime_limits())
        onnx_check.check_onnx(model, onnx_check.runtime_limits())
    return model, conversion


def _from_skops(ctx: _Context, _model: None) -> tuple[onnx.ModelProto, Conversion]:
    ctx.progress("validated")
    from portal.ingest.sklearn_convert import convert_skops

    limits = onnx_check.runtime_limits()
    with ctx.timed("convert"):
        model, conversion = convert_skops(ctx.src, opset=limits.opsets[""], ml_opset=limits.opsets["ai.onnx.ml"])
    with ctx.timed("check"):
        onnx_check.fit_ir_version(model, limits)
        onnx_check.check_onnx(model, limits)
    return model, conversion


_Handler = Callable[[_Context, Any], "tuple[onnx.ModelProto, Conversion]"]
_HANDLERS: dict[str, _Handler] = {
    "onnx": _from_onnx,
    "zip-onnx": _from_bundle,
    "torchscript": lambda ctx, m: _from_torch(ctx, m, exported=False),
    "pt2": lambda ctx, m: _from_torch(ctx, m, exported=True),
    "skops": _from_skops,
}


def ingest(ctx: _Context) -> dict[str, Any]:
    """Detect, convert, check and run the upload; return the report as JSON-able data."""
    with ctx.timed("detect"):
        fmt, parsed = sniff(ctx.src)
    if fmt in _ZIP_FORMATS:
        with ctx.timed("validate"):
            check_zip(ctx.src, settings=ctx.settings)  # bombs and hostile names first, whatever the archive is
    if fmt not in _HANDLERS:
        raise UnsupportedFormatError(_REFUSALS.get(fmt, _REFUSALS["unknown"]))
    model, conversion = _HANDLERS[fmt](ctx, parsed)
    with ctx.timed("save"):
        size = onnx_check.save_onnx(model, ctx.out)
    ctx.progress("converted")
    info = describe_model(model, size_bytes=size)
    with ctx.timed("load"):
        info[TEST_RUN_KEY] = run_synthetic(ctx.out, model, info["signature"])
    ctx.progress("loaded")
    warning = untested_warning(info)
    return {
        "source_format": _SOURCE_FORMATS[fmt],
        "model": MODEL_FILE,
        "info": info,
        "suggested": conversion.suggested,
        "warnings": conversion.warnings + ([warning] if warning else []),
        "timings": ctx.timings,
    }


def _error(exc: BaseException) -> dict[str, Any]:
    if onnx_check.is_memory_failure(exc):
        return {"type": "SandboxError", "limit": "memory", "message": first_line(exc)}
    if isinstance(exc, PortalError):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "InvalidModelError", "message": f"ingest failed unexpectedly ({type(exc).__name__}): {first_line(exc)}"}


def main(argv: list[str]) -> int:
    """Run the job described by ``argv[1]``; report progress on file descriptor ``argv[2]``."""
    job = json.loads(Path(argv[1]).read_text())
    apply_limits(job["limits"])
    ctx = _Context(job, int(argv[2]))
    ctx.confinement, ctx.unconfined_reason = confine_job(job)
    install_guard(ctx.scratch)
    try:
        report = ingest(ctx)
        report["confinement"] = ctx.confinement.describe() if ctx.confinement else f"none ({ctx.unconfined_reason})"
        text = json.dumps({"ok": True, **report})  # inside the try: a report that is not JSON is a refusal too
    except Exception as exc:  # noqa: BLE001 - everything, MemoryError included, travels back as JSON
        text = json.dumps({"ok": False, "error": _error(exc)})
    result = Path(job["result"])
    tmp = result.with_name(result.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
