"""Check an ONNX model against the installed onnxruntime, inline bundle data, run it once.

Runs inside the sandboxed child only: session creation and the dummy inference
can allocate whatever the model asks for.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import numpy as np
import onnx
from onnx import TensorProto, helper

from portal.errors import InvalidModelError, UnsupportedFormatError
from portal.ingest.modelinfo import dummy_feeds

__all__ = [
    "KNOWN_DOMAINS",
    "Conversion",
    "RuntimeLimits",
    "check_onnx",
    "check_versions",
    "external_tensors",
    "first_line",
    "fit_ir_version",
    "inline_external_data",
    "is_memory_failure",
    "load_session",
    "raise_if_memory",
    "run_once",
    "runtime_limits",
    "save_onnx",
]

KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
_MAX_PROTOBUF = 2**31 - 1
_MEMORY_MARKERS = (
    "failed to allocate",
    "bad_alloc",
    "bad allocation",
    "can't allocate memory",
    "cannot allocate memory",
    "out of memory",
    "failed to map segment",  # dlopen of a large native library under RLIMIT_AS
)
_ORT_SOURCE = re.compile(r"/onnxruntime_src/\S+\s*")
_REEXPORT_HINT = "re-export it with an older exporter or a lower target opset"


@dataclass
class Conversion:
    """What a converter produced besides the ONNX model: warnings and suggested metadata."""

    warnings: list[str] = field(default_factory=list)
    suggested: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeLimits:
    """Newest IR version and opset per domain that the installed onnxruntime loads."""

    ir_version: int
    opsets: dict[str, int]


def _probe_model(ir_version: int, opset: int, ml_opset: int | None) -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    value = helper.make_tensor_value_info
    graph = helper.make_graph([node], "probe", [value("x", TensorProto.FLOAT, [1])], [value("y", TensorProto.FLOAT, [1])])
    opsets = [helper.make_opsetid("", opset)]
    if ml_opset is not None:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ml_opset))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = ir_version
    return model.SerializeToString()


def _loads(data: bytes) -> bool:
    """Whether onnxruntime loads the probe; a failure that is not about versions propagates."""
    import onnxruntime as ort

    try:
        _session(ort, data)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own unrelated classes
        if "version" in str(exc).lower() or "opset" in str(exc).lower():
            return False
        raise
    return True


def _session(ort: Any, model: bytes | str) -> Any:
    """A CPU session without onnxruntime's print-and-retry fallback (pointless for the CPU provider)."""
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"], enable_fallback=0)


def _newest(candidates: range, build: Any) -> int:
    for version in candidates:
        if _loads(build(version)):
            return version
    raise InvalidModelError("onnxruntime loads no probe model; the runtime installation is broken")


@functools.cache
def runtime_limits() -> RuntimeLimits:
    """Probe onnxruntime with tiny models: the newest IR version and opsets it loads."""
    newest = helper.VERSION_TABLE[-1]  # (release, ir, ai.onnx opset, ai.onnx.ml opset, training)
    ir = _newest(range(onnx.IR_VERSION, 6, -1), lambda v: _probe_model(v, 13, None))
    opset = _newest(range(newest[2], 6, -1), lambda v: _probe_model(ir, v, None))
    ml = _newest(range(newest[3], 0, -1), lambda v: _probe_model(ir, 13, v))
    return RuntimeLimits(ir_version=ir, opsets={"": opset, "ai.onnx": opset, "ai.onnx.ml": ml})


def fit_ir_version(model: onnx.ModelProto, limits: RuntimeLimits) -> None:
    """Lower a converter's IR version to what the runtime loads when the opsets allow it."""
    if model.ir_version > limits.ir_version:
        needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
        model.ir_version = max(needed, min(model.ir_version, limits.ir_version))


def check_versions(model: onnx.ModelProto, limits: RuntimeLimits) -> None:
    """Refuse an IR version or opset newer than the installed onnxruntime loads."""
    if model.ir_version > limits.ir_version:
        raise InvalidModelError(
            f"IR version {model.ir_version} is newer than this runtime supports (max "
            f"{limits.ir_version}); {_REEXPORT_HINT} (e.g. opset <= {limits.opsets['']})"
        )
    for imp in model.opset_import:
        newest = limits.opsets.get(imp.domain)
        if newest is not None and imp.version > newest:
            raise InvalidModelError(
                f"opset {imp.version} of domain {imp.domain or 'ai.onnx'!r} is newer than this "
                f"runtime supports (max {newest}); {_REEXPORT_HINT}"
            )


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    yield from _nodes(model.graph)
    for function in model.functions:
        yield from function.node


def _check_domains(model: onnx.ModelProto) -> None:
    allowed = set(KNOWN_DOMAINS) | {function.domain for function in model.functions}
    accepted = ", ".join(repr(d) for d in KNOWN_DOMAINS)
    for imp in model.opset_import:
        if imp.domain not in allowed:
            raise UnsupportedFormatError(
                f"the model imports operators from the unknown domain {imp.domain!r}; "
                f"accepted domains are {accepted} and the model's own functions"
            )
    for node in _all_nodes(model):
        if node.domain not in allowed:
            raise UnsupportedFormatError(
                f"operator {node.op_type!r} comes from the unknown domain {node.domain!r}; "
                f"accepted domains are {accepted} and the model's own functions"
            )


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterator[TensorProto]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def external_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    """Every tensor of ``model`` (functions included) whose data lives in an external file."""
    tensors = [*_tensors(model.graph), *(t for f in model.functions for t in _node_tensors(f.node))]
    return [t for t in tensors if t.data_location == TensorProto.EXTERNAL]


def _external_location(tensor: TensorProto) -> str:
    return {entry.key: entry.value for entry in tensor.external_data}.get("location", "")


def _check_location(tensor: TensorProto, base_dir: Path, root: Path) -> None:
    location = _external_location(tensor)
    bad = (
        not location
        or os.path.isabs(location)
        or location.startswith("\\")
        or (len(location) > 1 and location[1] == ":")
        or ".." in PurePosixPath(location.replace("\\", "/")).parts
    )
    # resolve the bundle folders first, so that only links inside the bundle count
    joined = os.path.join(os.path.realpath(base_dir), location)
    real = os.path.realpath(joined)
    if bad or not real.startswith(os.path.realpath(root) + os.sep) or real != os.path.abspath(joined):
        raise InvalidModelError(
            f"external data location {location!r} of tensor {tensor.name!r} points outside the "
            "bundle or through a link; locations must be plain relative paths of files in the .zip"
        )
    if not os.path.isfile(real):
        raise InvalidModelError(
            f"external data file {location!r} of tensor {tensor.name!r} is missing from the bundle"
        )


def inline_external_data(model: onnx.ModelProto, base_dir: Path, root: Path) -> int:
    """Validate every external data location against ``root`` and inline the data; return the file count."""
    tensors = external_tensors(model)
    for tensor in tensors:
        _check_location(tensor, base_dir, root)
    total = sum(os.path.getsize(os.path.join(base_dir, _external_location(t))) for t in tensors)
    if total + model.ByteSize() > _MAX_PROTOBUF:
        raise InvalidModelError(
            "the model's weights exceed 2 GiB, the limit of a self-contained ONNX file; "
            "this portal stores single-file models only"
        )
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(base_dir))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise InvalidModelError(f"cannot read the external data of the bundle: {exc}") from exc
    return len({_external_location(t) for t in tensors})


def _undecodable_text(message: Any) -> str | None:
    """The first text field of ``message`` that is not UTF-8 (protobuf hands those back as bytes)."""
    for field_desc, value in message.ListFields():
        if field_desc.type not in (field_desc.TYPE_STRING, field_desc.TYPE_MESSAGE):
            continue
        for item in value if field_desc.is_repeated else (value,):
            if field_desc.type == field_desc.TYPE_STRING:
                if isinstance(item, bytes):
                    return field_desc.full_name
            elif (found := _undecodable_text(item)) is not None:
                return found
    return None


def check_onnx(model: onnx.ModelProto, limits: RuntimeLimits) -> None:
    """Refuse versions, domains and graphs that the checker or strict shape inference reject."""
    check_versions(model, limits)
    bad_text = _undecodable_text(model)
    if bad_text is not None:
        raise InvalidModelError(
            f"the model holds text that is not valid UTF-8 (in {bad_text}); names and metadata must be "
            "UTF-8: re-export the model"
        )
    _check_domains(model)
    if external_tensors(model):
        raise InvalidModelError(
            "the model references external data files; upload a .zip bundle holding the "
            ".onnx file and its data files instead of the bare .onnx"
        )
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise InvalidModelError(f"the ONNX checker rejected the model: {first_line(exc)}") from exc
    except (ValueError, RuntimeError) as exc:
        raise InvalidModelError(f"the ONNX model could not be checked: {first_line(exc)}") from exc


def save_onnx(model: onnx.ModelProto, path: Path) -> int:
    """Write ``model`` as one self-contained file (temp file, fsync, replace); return its size."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(model.SerializeToString())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def is_memory_failure(exc: BaseException) -> bool:
    """Whether an exception from a native library means an allocation failed."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(marker in text for marker in _MEMORY_MARKERS)


def raise_if_memory(exc: BaseException) -> None:
    """Re-raise an allocation failure from a native library as :class:`MemoryError`."""
    if is_memory_failure(exc):
        raise MemoryError(first_line(exc)) from exc


def load_session(path: Path) -> Any:
    """An onnxruntime CPU session for ``path``; a failure is a refusal saying why (or a MemoryError)."""
    import onnxruntime as ort

    try:
        return _session(ort, str(path))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own unrelated classes
        _raise_runtime_failure("onnxruntime could not load the model", exc)


def run_once(path: Path, signature: dict[str, Any], *, batch: int = 1) -> list[np.ndarray]:
    """Create an onnxruntime CPU session for ``path`` and run zero-filled inputs through it."""
    session = load_session(path)
    try:
        feeds = dummy_feeds(signature, batch=batch)
        return list(session.run(None, feeds))
    except Exception as exc:  # noqa: BLE001
        _raise_runtime_failure(f"a test inference with zero-filled inputs (batch {batch}) failed", exc)


def _raise_runtime_failure(what: str, exc: Exception) -> NoReturn:
    if is_memory_failure(exc):
        raise MemoryError(f"{what}: {first_line(exc)}") from exc
    raise InvalidModelError(f"{what}: {first_line(exc)}") from exc


def _drop_cpp_signatures(text: str) -> str:
    """Remove ``void* onnxruntime::X::f(args...)`` frames that onnxruntime puts in its messages."""
    while (start := text.find("onnxruntime::")) != -1 and (opening := text.find("(", start)) != -1:
        depth, end = 0, opening
        for end in range(opening, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        before = text[:start].rstrip()
        word = before.rsplit(" ", 1)[-1] if before else ""
        if word.endswith(("*", "&")) or word in ("void", "bool", "int"):
            before = before[: len(before) - len(word)]
        text = before.rstrip() + " " + text[end + 1 :].lstrip()
    return text.strip()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without onnxruntime source frames, at most 500 characters."""
    text = _ORT_SOURCE.sub("", str(exc)).strip()
    line = (text.splitlines() or [type(exc).__name__])[0]
    return _drop_cpp_signatures(line)[:500] or type(exc).__name__
