"""The student as a drop-in version: torch → ONNX, then the parent's input and outputs around it.

A student "core" has one float32 input and one output: ``logits`` (torch
classifiers), ``probabilities`` (trees classifiers) or ``values`` (regressors).
:func:`adapt` renames everything inside the core (so no name clashes with the
parent's), takes the parent's input as it is (a Cast where it is not float32) and
builds each of the parent's outputs under its name, dtype and shape:

    label           ArgMax over the classes → Gather from the parent's class labels (int64 or string)
    probabilities   Softmax of the logits (or the trees' probabilities as they are)
    scores          the logits (or the log of the trees' probabilities)
    values          reshaped to the parent's shape
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import InvalidModelError
from .teacher import Teacher

__all__ = ["CORE_INPUT", "adapt", "torch_core"]

CORE_INPUT = "student_input"
_PREFIX = "student/"
_MIN_OPSET = 13  # Softmax over one axis, Squeeze/Unsqueeze with axes as inputs


def torch_core(net: Any, example: np.ndarray, path: Path) -> onnx.ModelProto:
    """``net`` exported with the TorchScript exporter (opset 17, dynamic batch)."""
    import torch

    net.eval()
    try:
        torch.onnx.export(net, (torch.from_numpy(np.ascontiguousarray(example[:2], np.float32)),), str(path),
                          input_names=[CORE_INPUT], output_names=["core"], opset_version=17,
                          dynamic_axes={CORE_INPUT: {0: "batch"}, "core": {0: "batch"}}, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise InvalidModelError(f"the student could not be exported to ONNX: {str(exc).splitlines()[0][:300]}") from exc
    return onnx.load(str(path))


def adapt(core: onnx.ModelProto, kind: str, teacher: Teacher) -> onnx.ModelProto:
    """``core`` with the parent's input and outputs; ``kind`` is what the core's one output holds."""
    model = onnx.ModelProto()
    model.CopyFrom(core)
    graph = model.graph
    _prefix_names(graph)
    core_in, core_out = graph.input[0].name, graph.output[0].name
    parent_in = teacher.input
    front: list[onnx.NodeProto] = []
    if parent_in.type.tensor_type.elem_type == TensorProto.FLOAT:
        _rename_uses(graph, core_in, parent_in.name)
    else:
        front.append(helper.make_node("Cast", [parent_in.name], [core_in], to=TensorProto.FLOAT, name="adapt/cast_in"))
    inits: list[onnx.TensorProto] = []
    tail: list[onnx.NodeProto] = []
    for out, out_kind in zip(teacher.outputs, teacher.kinds, strict=True):
        tail += _output(out, out_kind, kind, core_out, teacher, inits)
    nodes = [*front, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.input[:]
    graph.input.append(parent_in)
    del graph.output[:]
    graph.output.extend(teacher.outputs)
    _raise_opset(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise InvalidModelError(f"the student graph is not valid ONNX: {str(exc).splitlines()[0][:300]}") from exc
    return model


def _output(out: onnx.ValueInfoProto, out_kind: str, kind: str, core_out: str, teacher: Teacher,
            inits: list[onnx.TensorProto]) -> list[onnx.NodeProto]:
    name, tag = out.name, f"adapt/{out.name}"
    tensor = out.type.tensor_type
    nodes: list[onnx.NodeProto] = []
    if out_kind == "label":
        assert teacher.classes is not None
        classes = teacher.classes
        values = classes.astype(object) if classes.dtype == object else classes.astype(
            helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        inits.append(numpy_helper.from_array(np.asarray(values), f"{tag}/classes"))
        nodes.append(helper.make_node("ArgMax", [core_out], [f"{tag}/index"], axis=1, keepdims=0, name=f"{tag}/argmax"))
        result = f"{tag}/labels"
        nodes.append(helper.make_node("Gather", [f"{tag}/classes", f"{tag}/index"], [result], axis=0,
                                      name=f"{tag}/gather"))
    elif out_kind == "probabilities":
        result = f"{tag}/softmax" if kind == "logits" else core_out
        if kind == "logits":
            nodes.append(helper.make_node("Softmax", [core_out], [result], axis=1, name=f"{tag}/softmax"))
    elif out_kind == "scores":
        result = core_out
        if kind == "probabilities":
            inits.append(numpy_helper.from_array(np.array(1e-7, np.float32), f"{tag}/eps"))
            nodes += [helper.make_node("Max", [core_out, f"{tag}/eps"], [f"{tag}/clipped"], name=f"{tag}/max"),
                      helper.make_node("Log", [f"{tag}/clipped"], [f"{tag}/log"], name=f"{tag}/log")]
            result = f"{tag}/log"
    else:
        result = core_out
    shape = [-1] + [d.dim_value or -1 for d in tensor.shape.dim[1:]]
    if out_kind in ("label", "values") and shape.count(-1) <= 1:
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"{tag}/shape"))
        nodes.append(helper.make_node("Reshape", [result, f"{tag}/shape"], [f"{tag}/reshaped"], name=f"{tag}/reshape"))
        result = f"{tag}/reshaped"
    if out_kind != "label" and tensor.elem_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [result], [name], to=tensor.elem_type, name=f"{tag}/cast"))
    else:
        nodes.append(helper.make_node("Identity", [result], [name], name=f"{tag}/identity"))
    return nodes


def _prefix_names(graph: onnx.GraphProto) -> None:
    """Every value and node of the core renamed ``student/...``: the parent's names are then free."""
    def new(name: str) -> str:
        return f"{_PREFIX}{name}" if name else name

    for index, node in enumerate(graph.node):
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
        node.name = new(node.name or f"{node.op_type}_{index}")
    for items in (graph.initializer, graph.sparse_initializer):
        for item in items:
            item.name = new(item.name)
    for info in (*graph.input, *graph.output, *graph.value_info):
        info.name = new(info.name)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def _raise_opset(model: onnx.ModelProto) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < _MIN_OPSET:
            raise InvalidModelError(f"the student was exported at opset {opset.version}; {_MIN_OPSET} is needed")
