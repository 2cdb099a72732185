"""The teacher: the parent graph's signature, what distillation refuses, its outputs and its targets.

Runs in the sandboxed child. A parent can be distilled when it has one numeric
input, rows ``[N, features]`` or images ``[N, C, H, W]``, and plain tensor outputs:

    label           int64 or string tensor [N] (or [N, 1]): the predicted class
    probabilities   float [N, C] whose rows sum to 1
    scores          float [N, C], C >= 2, that are not probabilities (logits): a classifier
    values          float [N] or [N, K] of a model without class outputs: a regressor

A classifier's student learns the class probabilities (the softmax of the scores
when the parent has no probabilities); a regressor's learns the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidModelError

__all__ = ["Teacher", "read_teacher"]

_FLOATS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
           onnx.TensorProto.FLOAT16: np.float16}
_LABELS = (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.STRING)
_CLASS_ATTRS = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


@dataclass
class Teacher:
    """The parent as distillation sees it: its input, its outputs and what each output is."""

    path: Path
    input: onnx.ValueInfoProto
    outputs: list[onnx.ValueInfoProto]
    kinds: list[str] = field(default_factory=list)  # per output: label, probabilities, scores, values
    classes: np.ndarray | None = None  # the label of each probability column (classifiers with a label output)
    graph_classes: list[Any] | None = None  # class labels stored in the graph's ai.onnx.ml node, if any
    fixed_batch: int | None = None
    threads: int = 1
    _session: Any = None

    @property
    def rank(self) -> int:
        return len(self.input.type.tensor_type.shape.dim)

    @property
    def input_dtype(self) -> int:
        return int(self.input.type.tensor_type.elem_type)

    @property
    def classifier(self) -> bool:
        return any(k in ("label", "probabilities", "scores") for k in self.kinds)

    def run(self, x: np.ndarray, *, batch: int = 256) -> list[np.ndarray]:
        """The parent's outputs on ``x`` (padded to the fixed batch where the parent has one)."""
        import onnxruntime as ort

        if self._session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        size = self.fixed_batch or batch
        x = x.astype(_FLOATS.get(self.input_dtype, np.float32), copy=False)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            if self.fixed_batch and len(chunk) < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
            outs = self._session.run(None, {self.input.name: chunk})
            parts.append([np.asarray(o)[: min(size, len(x) - start)] for o in outs])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.outputs))]

    def targets(self, outs: list[np.ndarray]) -> np.ndarray:
        """What the student learns: class probabilities [N, C], or regression values [N, K] (float32)."""
        if not self.classifier:
            return outs[self.kinds.index("values")].reshape(len(outs[0]), -1).astype(np.float32)
        if "probabilities" in self.kinds:
            return outs[self.kinds.index("probabilities")].astype(np.float32)
        if "scores" in self.kinds:
            scores = outs[self.kinds.index("scores")].astype(np.float64)
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)
        labels = outs[self.kinds.index("label")].reshape(-1)
        assert self.classes is not None
        index = {v: i for i, v in enumerate(self.classes.tolist())}
        onehot = np.zeros((len(labels), len(self.classes)), np.float32)
        onehot[np.arange(len(labels)), [index[v] for v in labels.tolist()]] = 1.0
        return onehot

    def top1(self, outs: list[np.ndarray]) -> np.ndarray:
        """The class index each row gets (classifiers)."""
        return self.targets(outs).argmax(axis=1)


def read_teacher(path: Path, sample: np.ndarray, *, fixed_batch: int | None, threads: int) -> Teacher:
    """The parent at ``path``, its outputs classified on ``sample`` rows.

    Raises:
        InvalidModelError: an input or output distillation cannot reproduce, said plainly.
    """
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InvalidModelError(
            f"distill does not apply: the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
            "a student is trained for one numeric input (rows, sequences or images); "
            "export the model with its features in one tensor, or use another method")
    tensor = inputs[0].type.tensor_type
    if not inputs[0].type.HasField("tensor_type") or tensor.elem_type not in _FLOATS:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else "non-tensor"
        raise InvalidModelError(
            f"distill does not apply: the input {inputs[0].name!r} is {dtype}, and a student learns from float "
            "inputs only (string or integer columns would need the parent's encoding); use another method")
    if len(tensor.shape.dim) not in (2, 3, 4):
        raise InvalidModelError(
            f"distill does not apply: the input {inputs[0].name!r} has {len(tensor.shape.dim)} dimensions; "
            "students exist for rows [N, features], sequences [N, steps, features] and images [N, C, H, W] only")
    for out in model.graph.output:
        if not out.type.HasField("tensor_type"):
            raise InvalidModelError(
                f"distill does not apply: the output {out.name!r} is not a tensor (e.g. skl2onnx's ZipMap list of "
                "dicts); re-export the model with plain tensor outputs (skl2onnx: zipmap=False)")
    teacher = Teacher(path=path, input=inputs[0], outputs=list(model.graph.output), fixed_batch=fixed_batch,
                      threads=threads, graph_classes=_graph_classes(model))
    outs = teacher.run(sample)
    teacher.kinds = [_kind(o, v) for o, v in zip(teacher.outputs, outs, strict=True)]
    _check_kinds(teacher)
    if "label" in teacher.kinds:
        teacher.classes = _classes(teacher, outs)
    return teacher


def _graph_classes(model: onnx.ModelProto) -> list[Any] | None:
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in _CLASS_ATTRS:
                values = onnx.helper.get_attribute_value(attr)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def _kind(out: onnx.ValueInfoProto, value: np.ndarray) -> str:
    elem = out.type.tensor_type.elem_type
    if elem in _LABELS and (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
        return "label"
    if elem not in _FLOATS:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        raise InvalidModelError(
            f"distill does not apply: the output {out.name!r} is {dtype} with shape {list(value.shape)}; a student "
            "reproduces class labels [N], probabilities or scores [N, C] and float values only")
    if value.ndim == 2 and value.shape[1] >= 2:
        rows = value.astype(np.float64)
        if rows.min() >= -1e-6 and rows.max() <= 1 + 1e-6 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            return "probabilities"
        return "scores"
    if value.ndim in (1, 2):
        return "values"
    raise InvalidModelError(
        f"distill does not apply: the output {out.name!r} has shape {list(value.shape)}; a student reproduces "
        "outputs of shape [N] or [N, C] only")


def _check_kinds(teacher: Teacher) -> None:
    kinds = teacher.kinds
    if teacher.classifier and "values" in kinds:
        raise InvalidModelError(
            "distill does not apply: the model has both class outputs and single-column float outputs, which a "
            "student cannot tell apart; use another method")
    if not teacher.classifier and kinds.count("values") != 1:
        raise InvalidModelError(
            f"distill does not apply: the model has {kinds.count('values')} float outputs and no class output; a "
            "regression student reproduces exactly one output")
    widths = {o.type.tensor_type.shape.dim[1].dim_value for o, k in zip(teacher.outputs, kinds, strict=True)
              if k in ("probabilities", "scores")} - {0}
    if len(widths) > 1:
        raise InvalidModelError("distill does not apply: the model's class outputs disagree on the number of classes")


def _classes(teacher: Teacher, outs: list[np.ndarray]) -> np.ndarray:
    """The label of each probability column: from the graph, else read off the parent's own predictions."""
    labels = outs[teacher.kinds.index("label")].reshape(-1)
    width = next((o.shape[1] for o, k in zip(outs, teacher.kinds, strict=True) if k in ("probabilities", "scores")),
                 None)
    as_array = (lambda v: np.asarray(v, dtype=object)) if labels.dtype.kind in "OUS" else (
        lambda v: np.asarray(v, dtype=np.int64))
    if teacher.graph_classes is not None and (width is None or len(teacher.graph_classes) == width):
        return as_array(teacher.graph_classes)
    if width is None:  # label only: the classes the parent predicts on these rows
        return as_array(sorted(set(labels.tolist())))
    scores = outs[next(i for i, k in enumerate(teacher.kinds) if k in ("probabilities", "scores"))]
    mapping: dict[int, Any] = {}
    for column, label in zip(scores.argmax(axis=1).tolist(), labels.tolist(), strict=True):
        if mapping.setdefault(column, label) != label:
            break
    else:
        if len(mapping) == width:
            return as_array([mapping[c] for c in range(width)])
        if labels.dtype.kind in "iu" and all(mapping[c] == c for c in mapping):
            return as_array(list(range(width)))
    raise InvalidModelError(
        "distill could not tell which class label belongs to which probability column (the parent predicts "
        f"{len(mapping)} of its {width} classes on these rows); upload rows that cover every class")
