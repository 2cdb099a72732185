"""The test run at ingest: synthetic inputs tried in turn until one runs through the model.

Zero-filled inputs suit most models, but an input that carries a shape, a
repeat count or split lengths makes them fail (``Expand`` to a shape of zeros,
``SplitToSequence`` with splits that do not add up).  So ones, small integer
ranges and other sizes for symbolic dimensions are tried next, with inputs the
graph uses as a shape (``Expand``, ``Tile``, ``ConstantOfShape``, ``Reshape``)
filled with values a shape can take.  A model that loads but runs on none of
them is still accepted, with the reason it could not be test-run; the session
was created under the sandbox's limits either way.

Runs inside the sandboxed child only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from portal.ingest.modelinfo import numpy_dtype
from portal.ingest.onnx_check import first_line, load_session, raise_if_memory

__all__ = ["TEST_RUN_KEY", "run_synthetic", "shape_inputs", "synthetic_feeds", "untested_warning"]

TEST_RUN_KEY = "test_run"  # in a version's info: {"ran": bool, "inputs": str} or {"ran": False, "reason": str}

# (operator, input position) -> what the input is to that operator
_SHAPE_USES = {
    ("Expand", 1): "shape", ("Tile", 1): "shape", ("ConstantOfShape", 0): "shape", ("Reshape", 1): "reshape",
}
# fill, size of symbolic dimensions, label
_ATTEMPTS = (
    ("zeros", 1, "zero-filled inputs (batch 1)"),
    ("ones", 1, "one-filled inputs (batch 1)"),
    ("range", 1, "small integer ranges (batch 1)"),
    ("ones", 2, "one-filled inputs, symbolic dimensions 2"),
    ("ones", 3, "one-filled inputs, symbolic dimensions 3"),
)


def shape_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """Graph inputs that an operator reads as a shape: ``{name: "shape" | "reshape"}``."""
    inputs = {i.name for i in model.graph.input}
    found: dict[str, str] = {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            use = _SHAPE_USES.get((node.op_type, position))
            if use and name in inputs:
                found.setdefault(name, use)
    return found


def _filled(dims: list[int], dtype_name: str, fill: str, use: str | None) -> np.ndarray:
    dtype = numpy_dtype(dtype_name)
    count = int(np.prod(dims)) if dims else 1
    if dtype_name == "string":
        text = {"zeros": "", "ones": "a"}.get(fill)
        values = [text if text is not None else f"v{i % 3}" for i in range(count)]
        return np.array(values, dtype=object).reshape(dims)
    if use == "reshape" and fill != "zeros" and len(dims) == 1 and dtype.kind in "iu":
        return np.array([-1] + [1] * (dims[0] - 1), dtype=dtype)[: dims[0]]  # any element count fits [-1, 1, ...]
    if fill == "zeros":
        return np.zeros(dims, dtype=dtype)
    if fill == "range" and use is None:
        return (np.arange(count) % 3 + (dtype.kind != "b")).astype(dtype).reshape(dims)
    return np.ones(dims, dtype=dtype)


def synthetic_feeds(
    signature: dict[str, Any], uses: dict[str, str], *, fill: str, size: int
) -> dict[str, np.ndarray]:
    """Feeds for every tensor input: ``fill`` ("zeros", "ones", "range"), symbolic dimensions ``size``.

    Raises:
        ValueError: an input is not a tensor (a sequence or map cannot be synthesised).
    """
    feeds: dict[str, np.ndarray] = {}
    for spec in signature["inputs"]:
        if spec.get("kind") != "tensor":
            raise ValueError(f"input {spec['name']!r} is a {spec.get('kind')}, which no synthetic input can fill")
        dims = [d if isinstance(d, int) and d > 0 else size for d in spec.get("shape") or []]
        feeds[spec["name"]] = _filled(dims, spec["dtype"], fill, uses.get(spec["name"]))
    return feeds


def _attempts(signature: dict[str, Any], uses: dict[str, str]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    seen: list[dict[str, np.ndarray]] = []
    for fill, size, label in _ATTEMPTS:
        feeds = synthetic_feeds(signature, uses, fill=fill, size=size)
        same = any(set(feeds) == set(s) and all(np.array_equal(feeds[k], s[k]) and feeds[k].shape == s[k].shape
                                                for k in feeds) for s in seen)
        if not same:  # e.g. a model without inputs: one run says all there is to say
            seen.append(feeds)
            yield label, feeds


def run_synthetic(path: Path, model: onnx.ModelProto, signature: dict[str, Any]) -> dict[str, Any]:
    """Load ``path`` in onnxruntime and run synthetic inputs until one runs; say which, or why none did.

    Returns ``{"ran": True, "inputs": label}`` or ``{"ran": False, "reason": text}``.

    Raises:
        InvalidModelError: onnxruntime cannot load the model (that is still a refusal).
        MemoryError: loading or a run failed to allocate (the sandbox's memory limit), no model fault to record.
    """
    session = load_session(path)
    uses = shape_inputs(model)
    first = ""
    try:
        for label, feeds in _attempts(signature, uses):
            try:
                session.run(None, feeds)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated classes
                raise_if_memory(exc)
                first = first or f"{label} failed: {first_line(exc)}"
                continue
            return {"ran": True, "inputs": label}
    except ValueError as exc:
        return {"ran": False, "reason": str(exc)}
    tried = ", ".join(label for _, _, label in _ATTEMPTS)
    return {"ran": False, "reason": f"no synthetic input ran through it (tried {tried}); {first}"}


def untested_warning(info: dict[str, Any]) -> str | None:
    """The warning to show for a version whose test run at ingest failed, else None."""
    run = info.get(TEST_RUN_KEY) or {}
    if run.get("ran", True):
        return None
    reason = run.get("reason", "no synthetic input ran through it")
    return (f"This model could not be test-run: {reason}. The model loaded in the sandbox under its limits; "
            "check its predictions on data you know before relying on them")
