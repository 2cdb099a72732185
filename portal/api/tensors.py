"""Open Inference Protocol (v2) tensors: datatypes, metadata, request decoding, response encoding.

JSON tensors carry ``name``, ``datatype``, ``shape`` and ``data`` (flat or nested,
row-major).  Triton's binary tensor extension is also understood: with an
``Inference-Header-Content-Length`` header the JSON header is followed by raw
little-endian tensors (``parameters.binary_data_size`` each; BYTES elements
prefixed with a 4-byte length), which is what ``tritonclient`` sends by default.

Every refusal is an ``InvalidInputError`` naming the tensor, what was expected
and what was given.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..serving.casting import listing

__all__ = [
    "NUMPY_TYPES",
    "InferRequest",
    "RequestedOutput",
    "binary_data",
    "bytes_elements",
    "check_shape",
    "decode_infer_request",
    "element_count",
    "encode_outputs",
    "from_binary",
    "oip_datatype",
    "parse_json",
    "tensor_metadata",
    "typed_array",
]

_TO_OIP = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES", "bfloat16": "BF16",
}
NUMPY_TYPES = {oip: name for name, oip in _TO_OIP.items() if name not in ("string", "bfloat16")}
_MAX_ELEMENTS = 2**31


def oip_datatype(dtype_name: str) -> str:
    """The OIP datatype of a numpy dtype name (``"string"`` → ``BYTES``)."""
    if dtype_name == "object" or dtype_name.startswith(("str", "<U", "bytes")):
        return "BYTES"
    return _TO_OIP.get(dtype_name, dtype_name.upper())


def _oip_shape(shape: Sequence[Any] | None) -> list[int]:
    if shape is None:
        return [-1]
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def tensor_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "datatype", "shape"}`` of a signature entry, -1 for dynamic dimensions."""
    if spec.get("kind") == "tensor":
        return {"name": spec["name"], "datatype": oip_datatype(spec["dtype"]), "shape": _oip_shape(spec.get("shape"))}
    if spec.get("kind") == "sequence_map":
        # predict turns a sequence of maps (skl2onnx's ZipMap) into a [rows, keys] tensor
        return {"name": spec["name"], "datatype": oip_datatype(spec.get("value_dtype", "float32")), "shape": [-1, -1]}
    return {"name": spec["name"], "datatype": "BYTES", "shape": [-1]}


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for, and whether it wants it as binary data."""

    name: str
    binary: bool


@dataclass
class InferRequest:
    """A decoded infer request: arrays by input name, ready for the model."""

    id: str | None
    arrays: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None
    binary_output: bool
    rows: int
    parameters: dict[str, Any] = field(default_factory=dict)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _split_body(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    if header_length is None:
        head, rest = body, memoryview(b"")
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidInputError(
                f"Inference-Header-Content-Length must be an integer (not {header_length[:32]!r})"
            ) from None
        if not 0 <= size <= len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length is {size} but the body has {len(body)} bytes"
            )
        head, rest = body[:size], memoryview(body)[size:]
    return parse_json(head), rest


def parse_json(body: bytes) -> Any:
    """A request body's JSON document; malformed or too deeply nested JSON is a 400 with the reason."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidInputError("malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"malformed JSON: {str(exc)[:200]}") from None


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: 'parameters' must be an object, got {type(value).__name__}")
    return value


def check_shape(name: str, shape: Any, want: Sequence[Any] | None) -> tuple[int, ...]:
    """The request's ``shape`` of input ``name`` as a tuple, checked against the model's (``want``)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInputError(f"input {name!r}: 'shape' must be a list of non-negative integers, got {str(shape)[:80]}")
    if want is None:
        return tuple(shape)
    if len(shape) != len(want):
        raise InvalidInputError(
            f"input {name!r}: expected shape {_shape_text(_oip_shape(want))}, got {_shape_text(shape)}"
        )
    for axis, (w, g) in enumerate(zip(want, shape, strict=True)):
        # axis 0 of a fixed-batch model may differ: predict runs such inputs in chunks
        if axis > 0 and isinstance(w, int) and w >= 0 and w != g:
            raise InvalidInputError(
                f"input {name!r}: expected shape {_shape_text(_oip_shape(want))}, got {_shape_text(shape)} "
                f"(axis {axis} must be {w})"
            )
    return tuple(shape)


def element_count(name: str, shape: tuple[int, ...]) -> int:
    """How many elements ``shape`` holds, refusing more than a request may send."""
    count = math.prod(shape)
    if count > _MAX_ELEMENTS:
        raise InvalidInputError(f"input {name!r}: shape {_shape_text(shape)} has too many elements ({count})")
    return count


def _from_json(name: str, datatype: str, data: Any, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInputError(f"input {name!r}: 'data' must be a (flat or nested) list, got {type(data).__name__}")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidInputError(
            f"input {name!r}: 'data' must be numbers or strings in nested lists of equal lengths"
        ) from None
    if arr.size != count:
        raise InvalidInputError(f"input {name!r}: the shape holds {count} values, got {arr.size} in 'data'")
    return typed_array(name, datatype, arr)


def typed_array(name: str, datatype: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` (decoded from JSON or typed contents) as the OIP ``datatype``, refusing lossy casts."""
    kind = arr.dtype.kind
    if arr.size == 0:
        return arr.astype(object if datatype == "BYTES" else np.dtype(NUMPY_TYPES[datatype]))
    if datatype == "BYTES":
        if kind != "U":
            raise InvalidInputError(f"input {name!r}: expected BYTES (strings), got {_kind_text(arr)}")
        return arr.astype(object)
    want = np.dtype(NUMPY_TYPES[datatype])
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInputError(f"input {name!r}: expected BOOL (true/false), got {_kind_text(arr)}")
        return arr
    if kind not in "iuf":
        raise InvalidInputError(f"input {name!r}: expected {datatype} numbers, got {_kind_text(arr)}")
    if want.kind == "f":
        return arr.astype(want)
    if kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise InvalidInputError(f"input {name!r}: expected {datatype} integers, got fractional values")
    info = np.iinfo(want)
    if arr.min() < info.min or arr.max() > info.max:
        raise InvalidInputError(f"input {name!r}: values outside the {datatype} range [{info.min}, {info.max}]")
    return arr.astype(want)


def _kind_text(arr: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}.get(
        arr.dtype.kind, "mixed or null values"
    )


def from_binary(name: str, datatype: str, raw: memoryview, count: int) -> np.ndarray:
    """``count`` elements of ``datatype`` from raw little-endian bytes (BYTES: length-prefixed UTF-8)."""
    if datatype == "BYTES":
        return bytes_elements(name, raw, count)
    want = np.dtype(NUMPY_TYPES[datatype])
    itemsize = 1 if datatype == "BOOL" else want.itemsize
    if len(raw) != count * itemsize:
        raise InvalidInputError(
            f"input {name!r}: the shape holds {count} {datatype} values ({count * itemsize} bytes), "
            f"got {len(raw)} bytes"
        )
    if datatype == "BOOL":
        return np.frombuffer(raw, dtype=np.uint8).astype(bool)
    return np.frombuffer(raw, dtype=want.newbyteorder("<")).astype(want)


def bytes_elements(name: str, raw: memoryview, count: int) -> np.ndarray:
    """``count`` length-prefixed UTF-8 BYTES elements from ``raw``, as an object array of strings."""
    items: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInputError(f"input {name!r}: truncated BYTES element length at byte {offset}")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InvalidInputError(f"input {name!r}: BYTES element {len(items)} runs past the end of its data")
        try:
            items.append(bytes(raw[offset : offset + size]).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInputError(f"input {name!r}: BYTES element {len(items)} is not UTF-8 text") from None
        offset += size
    if len(items) != count:
        raise InvalidInputError(f"input {name!r}: the shape holds {count} values, got {len(items)} BYTES elements")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr


class _BinaryCursor:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, name: str, size: Any) -> memoryview:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"input {name!r}: binary_data_size must be a non-negative integer")
        if self.offset + size > len(self.data):
            raise InvalidInputError(f"input {name!r}: binary_data_size {size} runs past the end of the body")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def _decode_input(item: Any, specs: dict[str, dict[str, Any]], cursor: _BinaryCursor) -> tuple[str, np.ndarray]:
    if not isinstance(item, dict):
        raise InvalidInputError(f"each entry of 'inputs' must be an object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInputError("each input needs a 'name' (a string)")
    spec = specs.get(name)
    if spec is None:
        raise InvalidInputError(f"unknown input {name[:100]!r}; the model takes {listing(list(specs))}")
    want = oip_datatype(spec["dtype"])
    got = item.get("datatype")
    if got != want:
        raise InvalidInputError(f"input {name!r}: expected datatype {want}, got {str(got)[:32]}")
    if want not in NUMPY_TYPES and want != "BYTES":
        raise InvalidInputError(f"input {name!r}: datatype {want} cannot be sent over this API")
    shape = check_shape(name, item.get("shape"), spec.get("shape"))
    count = element_count(name, shape)
    params = _parameters(item.get("parameters"), f"input {name!r}")
    if "binary_data_size" in params:
        if "data" in item:
            raise InvalidInputError(f"input {name!r}: give either 'data' or binary_data_size, not both")
        arr = from_binary(name, want, cursor.take(name, params["binary_data_size"]), count)
    elif "data" in item:
        arr = _from_json(name, want, item["data"], count)
    else:
        raise InvalidInputError(f"input {name!r} has no 'data'")
    return name, arr.reshape(shape)


def _requested_outputs(value: Any, names: Sequence[str], default_binary: bool) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInputError(f"'outputs' must be a list, got {type(value).__name__}")
    wanted = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInputError("each entry of 'outputs' must be an object with a 'name'")
        if item["name"] not in names:
            raise InvalidInputError(f"unknown output {item['name'][:100]!r}; the model gives {listing(list(names))}")
        params = _parameters(item.get("parameters"), f"output {item['name']!r}")
        wanted.append(RequestedOutput(item["name"], bool(params.get("binary_data", default_binary))))
    return wanted


def decode_infer_request(
    body: bytes,
    *,
    inputs: Sequence[dict[str, Any]],
    output_names: Sequence[str],
    header_length: str | None = None,
) -> InferRequest:
    """Decode and check an infer request against the model's input specs.

    Raises:
        InvalidInputError: malformed JSON, unknown or missing inputs, wrong datatype,
            shape or number of values.
    """
    doc, binary = _split_body(body, header_length)
    if not isinstance(doc, dict):
        raise InvalidInputError("the request body must be a JSON object with an 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"'id' must be a string, got {type(request_id).__name__}")
    params = _parameters(doc.get("parameters"), "request")
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidInputError("the request needs a non-empty 'inputs' list")
    specs = {s["name"]: s for s in inputs}
    cursor = _BinaryCursor(binary)
    arrays: dict[str, np.ndarray] = {}
    for item in items:
        name, arr = _decode_input(item, specs, cursor)
        if name in arrays:
            raise InvalidInputError(f"input {name!r} is given twice")
        arrays[name] = arr
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise InvalidInputError(f"missing input(s) {listing(missing)}; the model takes {listing(list(specs))}")
    binary_output = bool(params.get("binary_data_output", False))
    outputs = _requested_outputs(doc.get("outputs"), output_names, binary_output)
    first = next(iter(arrays.values()))
    rows = int(first.shape[0]) if first.ndim else 1
    return InferRequest(request_id, arrays, outputs, binary_output, rows, params)


def _json_data(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        # JSON has no NaN or infinity: such values are sent as null
        return [float(v) if math.isfinite(v) else None for v in flat.tolist()]
    if flat.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    return flat.tolist()


def binary_data(arr: np.ndarray, datatype: str) -> bytes:
    """``arr`` as raw little-endian bytes of ``datatype`` (BYTES: each element length-prefixed)."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        parts = []
        for v in flat.tolist():
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    if datatype == "BOOL":
        return flat.astype(np.uint8).tobytes()
    if flat.dtype.byteorder == ">" or (flat.dtype.byteorder == "=" and sys.byteorder == "big"):
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    return flat.tobytes()  # one copy: tobytes makes the bytes whatever the array's layout


def encode_outputs(
    outputs: dict[str, np.ndarray], wanted: list[RequestedOutput] | None, *, binary_default: bool
) -> tuple[list[dict[str, Any]], bytes]:
    """Output tensors as OIP JSON entries, plus the binary section (empty unless asked for)."""
    chosen = wanted if wanted is not None else [RequestedOutput(n, binary_default) for n in outputs]
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in chosen:
        arr = np.asarray(outputs[out.name])
        datatype = oip_datatype(arr.dtype.name)
        entry: dict[str, Any] = {"name": out.name, "datatype": datatype, "shape": list(arr.shape)}
        if out.binary:
            blob = binary_data(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
        entries.append(entry)
    return entries, b"".join(blobs)
