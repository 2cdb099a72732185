"""What a compression method did to a graph: every parent node's fate, the variant's new nodes, op counts.

    >>> diff = diff_graphs(onnx.load("parent.onnx"), onnx.load("variant.onnx"), method="int8-static")
    >>> [c.name for c in diff.of_fate("quantized")]       # ['dense0', 'dense1', 'dense2', 'Mul__7']
    >>> diff.op_counts()                                   # [('QuantizeLinear', 0, 5, 5), ...]
    >>> GraphDiff.from_json(diff.to_json()) == diff

A parent node's fate is one of :data:`FATES`:

    quantized   int8 now: wrapped in QuantizeLinear/DequantizeLinear (QDQ), or rewritten as
                MatMulInteger, ConvInteger, QLinear*, DynamicQuantizeMatMul ...
    excluded    left in float by a quantizing method: named in its exclusion list, or reading
                dequantized tensors without being quantized itself
    fused       gone into a fused node (FusedGemm, FusedConv, Conv+BatchNormalization ...), or
                a node that absorbed others
    pruned      the same node, with more of its weights zero
    converted   computed in float16 now (fp16)
    replaced    the whole graph is a new network trained to stand in for it (distill): no
                node carries over, so nodes are not matched
    removed     gone, and nothing computes its output any more (folded into a constant, an
                Identity dropped)
    unchanged   the same node, same weights

Nodes are matched by name first (a name-less node is called ``{op_type}__{index}``,
the name the portal's methods give it), then by the tensor it writes, then by the
tensors it reads. Only the main graph is compared, not the bodies of If/Loop/Scan.
Pure functions over ``onnx.ModelProto``; the portal runs them in the sandboxed child.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ..errors import InvalidModelError
from .graphmatch import Graphs, node_fates

__all__ = [
    "FATES",
    "GraphDiff",
    "NodeAdded",
    "NodeChange",
    "diff_graphs",
    "excluded_nodes",
    "quantizable_ops",
    "run_diff",
    "variant_diff",
]

FATES = ("quantized", "excluded", "fused", "pruned", "converted", "replaced", "removed", "unchanged")
STUDENT = "the student network trained to stand in for the parent"
MAX_LISTED = 5000  # node lists kept in a stored diff; a larger graph keeps the counts and the first ones


@dataclass(frozen=True)
class NodeChange:
    """One parent node and what became of it in the variant."""

    name: str  # the parent node's name (``{op_type}__{index}`` when it had none)
    op_type: str  # before
    fate: str  # one of FATES
    after: str = ""  # the variant's op type(s) doing its work now ("" when removed)
    into: str = ""  # the variant node now doing its work (itself, a fused node, a quantized form)
    detail: str = ""  # one line for users: "QDQ", "weights 50% zero", "fused into fused dense0"


@dataclass(frozen=True)
class NodeAdded:
    """A node of the variant that is not a parent node: Q/DQ, Cast, a fused or quantized replacement."""

    name: str
    op_type: str
    detail: str = ""


@dataclass(frozen=True)
class GraphDiff:
    """Parent and variant graphs compared node by node (see the module docstring)."""

    method: str | None
    changed: tuple[NodeChange, ...]  # parent nodes whose fate is not "unchanged", in parent order
    added: tuple[NodeAdded, ...]  # variant nodes that are not parent nodes, in variant order
    unchanged: int  # how many parent nodes are unchanged
    parent_ops: Mapping[str, int] = field(default_factory=dict)
    variant_ops: Mapping[str, int] = field(default_factory=dict)
    truncated: bool = False  # the node lists stop at MAX_LISTED entries (counts stay whole)
    fates: Mapping[str, int] = field(default_factory=dict)  # parent nodes per fate, "added" for new ones

    def of_fate(self, fate: str) -> list[NodeChange]:
        """The parent nodes with ``fate`` (not "unchanged": those are only counted)."""
        return [c for c in self.changed if c.fate == fate]

    def names(self, fate: str) -> set[str]:
        """The names of the parent nodes with ``fate``."""
        return {c.name for c in self.of_fate(fate)}

    def op_counts(self) -> list[tuple[str, int, int, int]]:
        """``(op_type, parent count, variant count, delta)`` for every op type of either graph.

        Changed op types first (largest change first), then the others by name.
        """
        ops = sorted(set(self.parent_ops) | set(self.variant_ops))
        rows = [(op, int(self.parent_ops.get(op, 0)), int(self.variant_ops.get(op, 0))) for op in ops]
        out = [(op, p, v, v - p) for op, p, v in rows]
        return sorted(out, key=lambda r: (r[3] == 0, -abs(r[3]), r[0]))

    @property
    def node_count(self) -> tuple[int, int]:
        """How many nodes the parent and the variant have."""
        return sum(self.parent_ops.values()), sum(self.variant_ops.values())

    def summary(self) -> str:
        """One line: how many nodes of each fate, and how many were added."""
        parts = [f"{self.fates[f]} {f}" for f in FATES if self.fates.get(f)]
        if self.fates.get("added"):
            parts.append(f"{self.fates['added']} added")
        before, after = self.node_count
        return f"{before} → {after} nodes: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``version.meta["variant"]["diff"]`` stores)."""
        return {"method": self.method, "changed": [asdict(c) for c in self.changed],
                "added": [asdict(a) for a in self.added], "unchanged": self.unchanged,
                "parent_ops": dict(self.parent_ops), "variant_ops": dict(self.variant_ops),
                "truncated": self.truncated, "fates": dict(self.fates)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GraphDiff:
        """The diff :meth:`to_json` wrote."""
        return cls(method=data.get("method"), changed=tuple(NodeChange(**c) for c in data.get("changed", [])),
                   added=tuple(NodeAdded(**a) for a in data.get("added", [])), unchanged=int(data["unchanged"]),
                   parent_ops={str(k): int(v) for k, v in data.get("parent_ops", {}).items()},
                   variant_ops={str(k): int(v) for k, v in data.get("variant_ops", {}).items()},
                   truncated=bool(data.get("truncated", False)),
                   fates={str(k): int(v) for k, v in data.get("fates", {}).items()})


def quantizable_ops(method: str | None, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The op types the quantizing ``method`` would quantize with ``params`` (empty for the others)."""
    params = params or {}
    if method == "int8-dynamic":
        ops = set(params.get("op_types") or ("MatMul", "Gemm"))
        return frozenset(ops | ({"MatMul"} if "Gemm" in ops else set()))
    if method is None or not method.startswith("int8"):
        return frozenset()
    if params.get("op_types"):
        return frozenset(params["op_types"])
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)  # what quantize_static takes for "all"


def diff_graphs(
    parent: onnx.ModelProto,
    variant: onnx.ModelProto,
    *,
    method: str | None = None,
    params: Mapping[str, Any] | None = None,
    excluded: Iterable[str] = (),
    quantizable: Collection[str] | None = None,
) -> GraphDiff:
    """Compare ``variant`` with the ``parent`` it was built from.

    Args:
        method: the method that built the variant (its name words the details; quantizing
            methods look for nodes kept in float).
        params: the method's parameters (int8's op types).
        excluded: names of parent nodes the method was told to keep in float (a budget's exclusions).
        quantizable: op types the method would quantize; default :func:`quantizable_ops`.
    """
    if quantizable is None:
        quantizable = quantizable_ops(method, params)
    if method == "distill":  # a new network, not an edit of the parent's: matching nodes would invent relations
        student = ", ".join(sorted(Counter(n.op_type for n in variant.graph.node)))
        changed = [NodeChange(name=_name(n, i), op_type=n.op_type, fate="replaced", after=student, into="student",
                              detail=f"replaced by {STUDENT}") for i, n in enumerate(parent.graph.node)]
        new = [NodeAdded(name=_name(n, i), op_type=n.op_type, detail=f"part of {STUDENT}")
               for i, n in enumerate(variant.graph.node)]
        fates = Counter({"replaced": len(changed), "added": len(new)})
    else:
        graphs = Graphs(parent.graph, variant.graph)
        changes, added = node_fates(graphs, method=method, excluded=set(excluded), quantizable=set(quantizable))
        fates = Counter(c.fate for c in changes)
        fates["added"] = len(added)
        changed = [NodeChange(**c.as_dict()) for c in changes if c.fate != "unchanged"]
        new = [NodeAdded(**a) for a in added]
    return GraphDiff(
        method=method, changed=tuple(changed[:MAX_LISTED]), added=tuple(new[:MAX_LISTED]),
        unchanged=fates.get("unchanged", 0),
        parent_ops=dict(Counter(n.op_type for n in parent.graph.node)),
        variant_ops=dict(Counter(n.op_type for n in variant.graph.node)),
        truncated=len(changed) > MAX_LISTED or len(new) > MAX_LISTED,
        fates={k: v for k, v in fates.items() if v},
    )


def _name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}__{index}"


def excluded_nodes(stats: Mapping[str, Any] | None) -> list[str]:
    """The nodes a build says it kept in float on purpose (int8-budgeted's report, an ``excluded_nodes`` list)."""
    stats = stats or {}
    budget = stats.get("budget") or {}
    names = [str(e["node"]) for e in budget.get("excluded", []) if isinstance(e, Mapping) and e.get("node")]
    listed = stats.get("excluded_nodes")  # a list of names (int8-budgeted counts them there instead)
    return names + ([str(n) for n in listed] if isinstance(listed, list | tuple) else [])


def _load(path: Path, what: str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, a missing external file ...
        text = str(exc).strip().split("\n")[0][:200] or type(exc).__name__
        raise InvalidModelError(
            f"the {what}'s model file cannot be read as an ONNX graph ({text}), so the graphs cannot be compared; "
            "an admin should run `portal fsck --verify` and restore it from a backup"
        ) from exc


def variant_diff(parent: Path | str, variant: Path | str, *, method: str | None,
                 params: Mapping[str, Any] | None = None, stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON of :func:`diff_graphs` for two model files (run in the sandboxed child).

    Raises:
        InvalidModelError: a file is not a readable ONNX model.
    """
    parent_model, variant_model = _load(Path(parent), "parent"), _load(Path(variant), "variant")
    diff = diff_graphs(parent_model, variant_model, method=method, params=params, excluded=excluded_nodes(stats))
    return diff.to_json()


def run_diff(job: Mapping[str, Any], progress: Any) -> dict[str, Any]:
    """The sandboxed child's ``diff`` job: ``{"parent", "variant", "method", "params", "stats"}`` → ``{"diff"}``."""
    progress("comparing the variant's graph with its parent's")
    return {"diff": variant_diff(job["parent"], job["variant"], method=job.get("method"),
                                 params=job.get("params"), stats=job.get("stats"))}
