"""Describe an ONNX model: signature, opsets, operators, parameters, metadata.

The description is plain JSON-able data so it can be stored in the registry,
returned by the REST API and computed inside the sandboxed child process.

A signature entry looks like::

    {"name": "x", "kind": "tensor", "dtype": "float32", "shape": ["batch", 30]}
    {"name": "probabilities", "kind": "sequence_map", "key_dtype": "int64",
     "value_dtype": "float32"}

Shape dimensions are ``int`` (fixed), ``str`` (symbolic) or ``None`` (unknown).
Dtypes are numpy names, with ``"string"`` for ONNX STRING tensors.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import InvalidModelError

__all__ = [
    "describe_model",
    "dummy_feeds",
    "numpy_dtype",
    "tensor_dtype_name",
]

_STRING = "string"


def tensor_dtype_name(elem_type: int) -> str:
    """Numpy name of an ONNX tensor element type (``"string"`` for STRING)."""
    if elem_type == TensorProto.STRING:
        return _STRING
    if elem_type == TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):  # UNDEFINED (0) or a number no ONNX version defines
        raise InvalidModelError(
            f"a tensor of the model has element type {elem_type}, which has no numpy equivalent; "
            "give every input and output a concrete type (float, int64, string, ...)"
        ) from None


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype used to feed a tensor of dtype ``name``."""
    return np.dtype(object) if name == _STRING else np.dtype(name)


def _shape_of(tensor_type: onnx.TypeProto.Tensor) -> list[int | str | None] | None:
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _describe_value(value: onnx.ValueInfoProto) -> dict[str, Any]:
    vtype = value.type
    which = vtype.WhichOneof("value")
    entry: dict[str, Any] = {"name": value.name}
    if which == "tensor_type":
        entry.update(
            kind="tensor",
            dtype=tensor_dtype_name(vtype.tensor_type.elem_type),
            shape=_shape_of(vtype.tensor_type),
        )
    elif which == "sequence_type" and vtype.sequence_type.elem_type.WhichOneof("value") == "map_type":
        mtype = vtype.sequence_type.elem_type.map_type
        entry.update(
            kind="sequence_map",
            key_dtype=tensor_dtype_name(mtype.key_type),
            value_dtype=tensor_dtype_name(mtype.value_type.tensor_type.elem_type),
        )
    elif which == "sequence_type":
        entry.update(kind="sequence")
    elif which == "map_type":
        entry.update(kind="map")
    else:
        entry.update(kind=str(which))
    return entry


def _count_parameters(graph: onnx.GraphProto) -> int:
    total = 0
    for init in graph.initializer:
        total += int(np.prod(init.dims)) if len(init.dims) else 1
    return total


def _count_operators(graph: onnx.GraphProto, counter: Counter[str]) -> None:
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counter[key] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _count_operators(attr.g, counter)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _count_operators(sub, counter)


def describe_model(model: onnx.ModelProto, *, size_bytes: int | None = None) -> dict[str, Any]:
    """Return the JSON-able description of ``model`` (signature and statistics)."""
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    operators: Counter[str] = Counter()
    _count_operators(graph, operators)
    return {
        "signature": {
            "inputs": [_describe_value(v) for v in graph.input if v.name not in initializer_names],
            "outputs": [_describe_value(v) for v in graph.output],
        },
        "ir_version": int(model.ir_version),
        "opset": {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import},
        "producer": " ".join(p for p in (model.producer_name, model.producer_version) if p),
        "graph_name": graph.name,
        "operators": dict(sorted(operators.items(), key=lambda kv: (-kv[1], kv[0]))),
        "node_count": sum(operators.values()),
        "parameters": _count_parameters(graph),
        "size_bytes": int(size_bytes if size_bytes is not None else model.ByteSize()),
        "metadata_props": {p.key: p.value for p in model.metadata_props},
    }


def _dummy_dim(dim: int | str | None) -> int:
    return dim if isinstance(dim, int) and dim > 0 else 1


def dummy_feeds(signature: dict[str, Any], *, batch: int = 1) -> dict[str, np.ndarray]:
    """Zero-filled feeds matching ``signature`` (symbolic dims set to ``batch`` or 1)."""
    feeds: dict[str, np.ndarray] = {}
    for spec in signature["inputs"]:
        if spec.get("kind") != "tensor":
            raise ValueError(f"input {spec['name']!r} is not a tensor ({spec.get('kind')})")
        shape = spec.get("shape") or []
        dims = [batch if i == 0 and not isinstance(d, int) else _dummy_dim(d) for i, d in enumerate(shape)]
        dtype = numpy_dtype(spec["dtype"])
        if spec["dtype"] == _STRING:
            feeds[spec["name"]] = np.full(dims, "", dtype=object)
        else:
            feeds[spec["name"]] = np.zeros(dims, dtype=dtype)
    return feeds
