"""The gRPC wire format of the Open Inference Protocol: ``ModelInferRequest`` in, ``ModelInferResponse`` out.

The same checks as the REST decoder (``portal.api.tensors``: datatype, shape,
element count, integer ranges, UTF-8 of BYTES), with the same messages, on
either representation a client may send:

- ``raw_input_contents``: one bytes entry per input, little-endian, BYTES
  elements each prefixed by a 4-byte length (what ``tritonclient.grpc`` sends);
- typed ``contents``: ``fp32_contents``, ``int64_contents``, ``bytes_contents``...

The answer uses the representation the request used (raw for raw, typed for
typed; raw whenever an output is FP16, which has no typed field).  Functions
read messages by field name only, so any wire-compatible generated class works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import InvalidInputError
from ...serving.casting import listing
from ..tensors import (
    NUMPY_TYPES,
    InferRequest,
    RequestedOutput,
    binary_data,
    bytes_elements,
    check_shape,
    element_count,
    from_binary,
    oip_datatype,
    typed_array,
)

__all__ = ["decode_model_infer", "encode_model_infer"]

# the typed field of each datatype (FP16 and BF16 have none: raw only)
_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
_FIELDS = tuple(dict.fromkeys(_FIELD.values()))
_ARRAY_TYPES: dict[np.dtype[Any], str] = {}


def decode_model_infer(request: Any, *, inputs: Sequence[dict[str, Any]], output_names: Sequence[str]) -> InferRequest:
    """Decode and check a ``ModelInferRequest`` against the model's input specs.

    Raises:
        InvalidInputError: unknown, missing or repeated inputs, wrong datatype or
            shape, contents that do not match the shape, raw and typed contents mixed.
    """
    tensors = request.inputs
    if not tensors:
        raise InvalidInputError("the request needs at least one tensor in 'inputs'")
    raw = request.raw_input_contents
    if raw and len(raw) != len(tensors):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs; send one per input, "
            "in the order of 'inputs'"
        )
    specs = {s["name"]: s for s in inputs}
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        if name in arrays:
            raise InvalidInputError(f"input {name!r} is given twice")
        arrays[name] = _decode_input(tensor, specs, raw[index] if raw else None)
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise InvalidInputError(f"missing input(s) {listing(missing)}; the model takes {listing(list(specs))}")
    outputs = [RequestedOutput(_output_name(o.name, output_names), True) for o in request.outputs] or None
    first = next(iter(arrays.values()))
    rows = int(first.shape[0]) if first.ndim else 1
    return InferRequest(request.id or None, arrays, outputs, bool(raw), rows)


def _output_name(name: str, names: Sequence[str]) -> str:
    if name not in names:
        raise InvalidInputError(f"unknown output {name[:100]!r}; the model gives {listing(list(names))}")
    return name


def _decode_input(tensor: Any, specs: dict[str, dict[str, Any]], raw: bytes | None) -> np.ndarray:
    name = tensor.name
    spec = specs.get(name)
    if spec is None:
        raise InvalidInputError(f"unknown input {name[:100]!r}; the model takes {listing(list(specs))}")
    want = oip_datatype(spec["dtype"])
    if tensor.datatype != want:
        raise InvalidInputError(f"input {name!r}: expected datatype {want}, got {tensor.datatype[:32] or 'none'}")
    if want not in NUMPY_TYPES and want != "BYTES":
        raise InvalidInputError(f"input {name!r}: datatype {want} cannot be sent over this API")
    shape = check_shape(name, list(tensor.shape), spec.get("shape"))
    count = element_count(name, shape)
    if raw is not None:
        if tensor.HasField("contents") and any(len(getattr(tensor.contents, f)) for f in _FIELDS):
            raise InvalidInputError(f"input {name!r}: give either 'contents' or raw_input_contents, not both")
        arr = from_binary(name, want, memoryview(raw), count)
    else:
        arr = _from_contents(name, want, tensor.contents, count)
    return arr.reshape(shape)


def _from_contents(name: str, datatype: str, contents: Any, count: int) -> np.ndarray:
    field = _FIELD.get(datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r}: {datatype} values have no typed contents; send raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        elsewhere = [f"{len(getattr(contents, f))} in contents.{f}" for f in _FIELDS
                     if f != field and len(getattr(contents, f))]
        hint = f" (but {', '.join(elsewhere)})" if elsewhere else ""
        raise InvalidInputError(
            f"input {name!r}: the shape holds {count} values, got {len(values)} in contents.{field}{hint}"
        )
    if datatype == "BYTES":
        # the same element check as raw BYTES, so both say the same thing about bad UTF-8
        return bytes_elements(name, memoryview(b"".join(len(v).to_bytes(4, "little") + v for v in values)), count)
    if datatype == "BOOL":
        return np.asarray(values, dtype=bool)
    kind = {"fp32_contents": np.float32, "fp64_contents": np.float64, "int_contents": np.int32,
            "int64_contents": np.int64, "uint_contents": np.uint32, "uint64_contents": np.uint64}[field]
    return typed_array(name, datatype, np.asarray(values, dtype=kind))


def encode_model_infer(response: Any, outputs: dict[str, np.ndarray], wanted: list[RequestedOutput] | None,
                       *, raw: bool) -> Any:
    """Fill ``response`` (a ``ModelInferResponse``) with ``outputs``, raw or typed; return it."""
    names = [o.name for o in wanted] if wanted is not None else list(outputs)
    arrays = [np.asarray(outputs[n]) for n in names]
    datatypes = [_array_datatype(a) for a in arrays]
    raw = raw or any(d not in _FIELD for d in datatypes)
    tensors, contents = response.outputs, response.raw_output_contents
    for name, arr, datatype in zip(names, arrays, datatypes, strict=True):
        tensor = tensors.add(name=name, datatype=datatype, shape=arr.shape)
        if raw:
            contents.append(binary_data(arr, datatype))
        else:
            _fill_contents(tensor.contents, arr, datatype)
    return response


def _array_datatype(arr: np.ndarray) -> str:
    """``oip_datatype`` of an array's dtype, remembered per dtype (``dtype.name`` alone costs a few µs)."""
    datatype = _ARRAY_TYPES.get(arr.dtype)
    if datatype is None:
        datatype = oip_datatype(arr.dtype.name)
        if len(_ARRAY_TYPES) < 256:  # dtypes are few; structured ones could be many
            _ARRAY_TYPES[arr.dtype] = datatype
    return datatype


def _fill_contents(contents: Any, arr: np.ndarray, datatype: str) -> None:
    flat = arr.reshape(-1)
    field = getattr(contents, _FIELD[datatype])
    if datatype == "BYTES":
        field.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist())
    else:
        field.extend(flat.tolist())
