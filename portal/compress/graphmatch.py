"""Which variant node does each parent node's work now: the matching behind :mod:`portal.compress.graphdiff`.

    1. match      by name, then by the tensor written (same op type), then by the tensors read
    2. same node  quantized (QDQ around it) > converted (float16) > pruned (more zero weights) > excluded > unchanged
    3. replaced   matched to a node of another op type: quantized (MatMulInteger, QLinearConv ...) or fused
    4. gone       its output now comes from another node: fused into it, or from new nodes (a quantized
                  rewrite, a fused node); its output is a constant now: removed (folded); else what its
                  consumers became (a fused pattern), or removed

Parent nodes are visited last to first for step 4, so a node whose output vanished
inside a fused pattern follows the consumer it fed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .methods.base import QUANTIZED_OPS, WEIGHTED_OPS

__all__ = ["Fate", "Graphs", "node_fates"]

_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_INTEGER_OPS = {op for op in QUANTIZED_OPS if op not in _QDQ} | {"QGemm", "QAttention", "DynamicQuantizeLSTM"}
_FLOAT16 = onnx.TensorProto.FLOAT16


def _is_quantized_op(op: str) -> bool:
    return op in _INTEGER_OPS or op.startswith("QLinear")


@dataclass
class Fate:
    """A parent node's fate while it is being worked out (see :class:`~portal.compress.graphdiff.NodeChange`)."""

    name: str
    op_type: str
    fate: str
    after: str = ""
    into: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Graphs:
    """The parent and variant graphs with the indexes the matching needs."""

    def __init__(self, parent: onnx.GraphProto, variant: onnx.GraphProto) -> None:
        self.p, self.v = list(parent.node), list(variant.node)
        self.pnames = [n.name or f"{n.op_type}__{i}" for i, n in enumerate(self.p)]
        self.vnames = [n.name or f"{n.op_type}__{i}" for i, n in enumerate(self.v)]
        self.p_inits = {i.name: i for i in parent.initializer}
        self.v_inits = {i.name: i for i in variant.initializer}
        self.p_tensors = ({t.name for t in parent.input} | set(self.p_inits)
                          | {o for n in self.p for o in n.output if o})
        self.v_constants = set(self.v_inits) | {o for n in self.v if n.op_type == "Constant" for o in n.output}
        self.v_producer = {o: j for j, n in enumerate(self.v) for o in n.output if o}
        self.v_consumers: dict[str, list[int]] = defaultdict(list)
        for j, n in enumerate(self.v):
            for t in n.input:
                self.v_consumers[t].append(j)
        self.p_consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.p):
            for t in n.input:
                self.p_consumers[t].append(i)
        self.v_types = _elem_types(variant)

    def v_op(self, j: int | None, op: str) -> bool:
        return j is not None and self.v[j].op_type == op

    def from_dq(self, tensor: str) -> bool:
        return self.v_op(self.v_producer.get(tensor), "DequantizeLinear")

    def into_q(self, tensor: str) -> bool:
        return any(self.v[k].op_type == "QuantizeLinear" for k in self.v_consumers.get(tensor, ()))


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element type of every tensor the variant declares, infers or casts to."""
    types = {i.name: i.data_type for i in graph.initializer}
    model = onnx.helper.make_model(graph)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is a help; the declared types remain
        pass
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if value.type.HasField("tensor_type"):
            types.setdefault(value.name, value.type.tensor_type.elem_type)
    for node in graph.node:
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None and node.output:
                types.setdefault(node.output[0], int(to))
    return types


def _match(g: Graphs) -> dict[int, int]:
    """Parent node index → the variant node index doing its work under the same name, output or inputs."""
    by_name: dict[str, int] = {}
    for j, n in enumerate(g.v):
        if n.name:
            by_name.setdefault(n.name, j)
    matched: dict[int, int] = {}
    used: set[int] = set()

    def take(i: int, j: int | None) -> None:
        if j is not None and j not in used and i not in matched:
            matched[i] = j
            used.add(j)

    for i, name in enumerate(g.pnames):
        take(i, by_name.get(name))
    for i, n in enumerate(g.p):
        for out in (o for o in n.output if o):
            j = g.v_producer.get(out)
            if j is not None and g.v[j].op_type == n.op_type:
                take(i, j)
    by_inputs: dict[tuple[str, ...], int] = {}
    for j, n in enumerate(g.v):
        if n.input and j not in used:
            by_inputs.setdefault(tuple(n.input), j)
    for i, n in enumerate(g.p):
        if n.input:
            take(i, by_inputs.get(tuple(n.input)))
    return matched


def _qdq_quantized(g: Graphs, i: int, j: int) -> bool:
    p, v = g.p[i], g.v[j]
    if p.op_type in WEIGHTED_OPS and len(p.input) > 1 and p.input[1] in g.p_inits and len(v.input) > 1:
        return g.from_dq(v.input[1])  # a weighted node is int8 when its weights are
    return any(g.from_dq(t) for t in v.input if t) and any(g.into_q(t) for t in v.output if t)


def _pruned(g: Graphs, i: int) -> str:
    """"weights 50% zero (…)" when the node's weights gained zeros, else ""."""
    for name in g.p[i].input:
        before, after = g.p_inits.get(name), g.v_inits.get(name)
        if before is None or after is None or before.data_type != after.data_type or before.dims != after.dims:
            continue
        if before.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, _FLOAT16):
            continue
        old, new = numpy_helper.to_array(before), numpy_helper.to_array(after)
        zeros_before, zeros = int(np.count_nonzero(old == 0)), int(np.count_nonzero(new == 0))
        if zeros > zeros_before:
            return f"weights {zeros / max(1, new.size):.0%} zero ({zeros - zeros_before:,} of {new.size:,} set to zero)"
    return ""


def _converted(g: Graphs, j: int) -> str:
    v = g.v[j]
    tensors = [t for t in [*v.input, *v.output] if t]
    if not any(g.v_types.get(t) == _FLOAT16 for t in tensors):
        return ""
    weights = [t for t in v.input if t in g.v_inits and g.v_inits[t].data_type == _FLOAT16]
    return "float16" + (f" (weights {', '.join(weights[:3])}{' …' if len(weights) > 3 else ''})" if weights else "")


def _same_node(g: Graphs, i: int, j: int) -> Fate:
    name, op = g.pnames[i], g.p[i].op_type
    if _qdq_quantized(g, i, j):
        return Fate(name, op, "quantized", op, g.vnames[j], "QDQ (int8 in, int8 out)")
    converted = _converted(g, j)
    if converted:
        return Fate(name, op, "converted", op, g.vnames[j], converted)
    pruned = _pruned(g, i)
    if pruned:
        return Fate(name, op, "pruned", op, g.vnames[j], pruned)
    return Fate(name, op, "unchanged", op, g.vnames[j])


def _by_whom(method: str | None) -> str:
    if method == "optimized":
        return " by onnxruntime's graph optimizations"
    return " by pre-processing (quant_pre_process)" if method and method.startswith("int8") else ""


def _region(g: Graphs, start: int, owner: int, claimed: dict[int, int], matched_v: set[int]) -> list[int]:
    """The new variant nodes that compute a vanished parent node's output, back to tensors the parent has."""
    stack, region = [start], []
    while stack:
        k = stack.pop()
        if k in claimed or k in matched_v:
            continue
        claimed[k] = owner
        region.append(k)
        for t in g.v[k].input:
            if t and t not in g.p_tensors and t in g.v_producer:
                stack.append(g.v_producer[t])
    return sorted(region)


class _Fates:
    """Works out every parent node's fate and the role of every added node."""

    def __init__(self, g: Graphs, method: str | None, excluded: set[str], quantizable: set[str]) -> None:
        self.g, self.method, self.excluded, self.quantizable = g, method, excluded, quantizable
        self.matched = _match(g)
        for i, j in self.matched.items():  # a name-less variant node goes by its parent node's name
            if not g.v[j].name:
                g.vnames[j] = g.pnames[i]
        self.owner = {j: i for i, j in self.matched.items()}  # variant node → the parent node it is
        self.claimed: dict[int, int] = {}  # new variant node → the parent node whose work it does
        self.fates: dict[int, Fate] = {}
        self.absorbed: dict[int, list[int]] = defaultdict(list)  # parent node → those fused into it
        self.host: dict[int, int] = {}  # parent node fused away → the parent node whose variant node took it

    def run(self) -> tuple[list[Fate], list[dict[str, str]]]:
        g = self.g
        for i, j in self.matched.items():
            self.fates[i] = self._matched(i, j)
        for i in self.matched:
            self._maybe_excluded(i)
        for i in reversed(range(len(g.p))):
            if i not in self.fates:
                self.fates[i] = self._gone(i)
        for i, parts in self.absorbed.items():
            self._absorbs(i, parts)
        return [self.fates[i] for i in range(len(g.p))], self._added()

    def _matched(self, i: int, j: int) -> Fate:
        g = self.g
        name, op, after = g.pnames[i], g.p[i].op_type, g.v[j].op_type
        if op == after:
            return _same_node(g, i, j)
        if _is_quantized_op(after):
            return Fate(name, op, "quantized", after, g.vnames[j], f"{op} → {after}")
        return Fate(name, op, "fused", after, g.vnames[j], f"{op} → {after}{_by_whom(self.method)}")

    def _maybe_excluded(self, i: int) -> None:
        fate = self.fates[i]
        if fate.fate != "unchanged" or not self.quantizable:
            return
        g, j, op = self.g, self.matched[i], fate.op_type
        if fate.name in self.excluded:
            fate.fate, fate.detail = "excluded", "kept in float: the method's exclusion list names it"
            return
        if op not in self.quantizable:
            return
        touches = any(g.from_dq(t) for t in g.v[j].input if t) or any(g.into_q(t) for t in g.v[j].output if t)
        elsewhere = any(f.fate == "quantized" and f.op_type == op for f in self.fates.values())
        if touches:
            fate.fate, fate.detail = "excluded", "kept in float between int8 nodes (it reads dequantized tensors)"
        elif elsewhere:
            fate.fate, fate.detail = "excluded", f"left in float although other {op} nodes were quantized"

    def _gone(self, i: int) -> Fate:
        g = self.g
        name, op = g.pnames[i], g.p[i].op_type
        outputs = [o for o in g.p[i].output if o]
        for out in outputs:
            j = g.v_producer.get(out)
            if j is None:
                continue
            if j in self.owner:  # another parent node's (new) node writes it now: fused into that one
                return self._fused_into(i, self.owner[j], j)
            region = _region(g, j, i, self.claimed, set(self.owner))
            return self._replaced(i, region or [j])
        if any(o in g.v_constants for o in outputs):
            return Fate(name, op, "removed", detail="folded into a constant")
        return self._follow_consumers(i, outputs)

    def _fused_into(self, i: int, host: int, j: int) -> Fate:
        g, host_fate = self.g, self.fates.get(host)
        self.absorbed[host].append(i)
        self.host[i] = host
        name, op, into = g.pnames[i], g.p[i].op_type, g.vnames[j]
        if host_fate is not None and host_fate.fate == "quantized" and op in ("Relu", "Clip"):
            detail = f"folded into {into}'s int8 output (the quantizer drops it: the int8 range clips)"
        else:
            detail = f"fused into {into}{_by_whom(self.method)}"
        return Fate(name, op, "fused", g.v[j].op_type, into, detail)

    def _replaced(self, i: int, region: list[int]) -> Fate:
        g = self.g
        name, op = g.pnames[i], g.p[i].op_type
        ops = [g.v[k].op_type for k in region]
        quantized = [k for k in region if _is_quantized_op(g.v[k].op_type)]
        if quantized:
            main = quantized[0]
            others = ", ".join(sorted({o for o in ops if o != g.v[main].op_type}))
            return Fate(name, op, "quantized", g.v[main].op_type, g.vnames[main],
                        f"{op} → {g.v[main].op_type}" + (f" (with {others})" if others else ""))
        main = region[-1]
        after = " + ".join(dict.fromkeys(ops))
        return Fate(name, op, "fused", after, g.vnames[main], f"{op} → {after}{_by_whom(self.method)}")

    def _follow_consumers(self, i: int, outputs: list[str]) -> Fate:
        """A node whose output vanished: inside a fused pattern if a consumer was fused away, else removed."""
        g = self.g
        name, op = g.pnames[i], g.p[i].op_type
        indexes = [c for o in outputs for c in g.p_consumers.get(o, ()) if c in self.fates]
        consumers = [self.fates[c] for c in indexes]
        for k, c in zip(indexes, consumers, strict=True):
            host = self.host.get(k, k)
            if c.fate in ("fused", "quantized") and c.into and (c.after != c.op_type or k in self.host):
                self.host[i] = host
                self.absorbed[host].append(i)
                return Fate(name, op, "fused", c.after, c.into, f"fused into {c.into}{_by_whom(self.method)}")
        if consumers and all(c.fate == "removed" and c.detail == "folded into a constant" for c in consumers):
            return Fate(name, op, "removed", detail="folded into a constant")
        return Fate(name, op, "removed", detail=f"dropped{_by_whom(self.method)}: nothing computes its output any more")

    def _absorbs(self, i: int, parts: list[int]) -> None:
        fate = self.fates[i]
        names = ", ".join(self.g.pnames[k] for k in sorted(parts))
        if fate.fate in ("unchanged", "excluded"):
            fate.fate, fate.detail = "fused", f"absorbed {names}{_by_whom(self.method)}"
        else:
            fate.detail = f"{fate.detail}; absorbed {names}"

    def _added(self) -> list[dict[str, str]]:
        g, out = self.g, []
        for j, node in enumerate(g.v):
            i = self.owner.get(j)
            if i is not None and g.p[i].op_type == node.op_type:
                continue  # the parent node itself
            out.append({"name": g.vnames[j], "op_type": node.op_type, "detail": self._role(j, i)})
        return out

    def _role(self, j: int, replaces: int | None) -> str:
        g, node = self.g, self.g.v[j]
        if replaces is not None:
            fused = sorted(self.absorbed.get(replaces, []))
            names = [g.pnames[k] for k in [replaces, *fused]]
            return f"replaces {' and '.join(names) if len(names) < 3 else ', '.join(names)}"
        if j in self.claimed:
            owner = self.claimed[j]
            return f"part of {g.pnames[owner]}'s {self.fates[owner].fate} form"
        first = node.input[0] if node.input else ""
        if node.op_type == "QuantizeLinear":
            return f"quantizes {first}"
        if node.op_type == "DequantizeLinear":
            return f"int8 weights {first}" if first in g.v_inits else f"dequantizes {first}"
        if node.op_type == "DynamicQuantizeLinear":
            return f"quantizes {first} on every call"
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), 0)
            return f"cast {first} to {onnx.helper.tensor_dtype_to_np_dtype(to).name if to else '?'}"
        return "new"


def node_fates(g: Graphs, *, method: str | None, excluded: set[str],
               quantizable: set[str]) -> tuple[list[Fate], list[dict[str, str]]]:
    """Every parent node's :class:`Fate` (parent order) and every added variant node (variant order)."""
    return _Fates(g, method, excluded, quantizable).run()
