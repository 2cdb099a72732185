"""Check and assemble the metadata a user gives at registration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError
from ..storage.registry import TASKS

__all__ = ["build_version_meta", "class_output", "infer_task", "parse_list", "parse_shape"]

_MODEL_KEYS = ("description", "tags", "task", "visibility")
_VERSION_KEYS = ("feature_names", "class_labels", "preprocessing", "notes", "demo")


def parse_list(text: str | None) -> list[str]:
    """Names typed one per line or separated by commas, blanks dropped."""
    if not text:
        return []
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def parse_shape(text: str | None, *, what: str = "input shape", required: bool = True) -> list[int] | None:
    """``"1, 3, 224, 224"``, ``"1x3x224x224"`` or ``"1×3×224×224"`` → ``[1, 3, 224, 224]``.

    Empty text is refused when ``required``, else None (no shape given). ``what``
    names the field in the error (``--input-shape`` on the command line).
    """
    if not required and not text:
        return None
    text = text or ""
    parts = [p for p in text.replace("x", ",").replace("×", ",").replace(" ", ",").split(",") if p]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if not dims or any(d < 1 or d > 2**31 for d in dims):
        raise InvalidInputError(f"invalid {what} {text[:60]!r}: expected positive integers like 1,3,224,224")
    return dims


def _clean_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_list(value)
    items = [str(v) for v in value]
    if not items:
        return None
    if len(set(items)) != len(items):
        dupes = sorted({v for v in items if items.count(v) > 1})
        raise InvalidInputError(f"{what} must be unique; repeated: {', '.join(dupes[:5])}")
    for item in items:
        if len(item) > 256 or any(ord(c) < 32 for c in item):
            raise InvalidInputError(f"{what}: {item[:40]!r} is too long or has control characters")
    return items


def infer_task(info: dict[str, Any]) -> str:
    """Guess the task from the outputs: label + scores → classification, one float → regression."""
    outputs = info["signature"]["outputs"]
    kinds = [(o.get("kind"), o.get("dtype"), o.get("shape")) for o in outputs]
    if any(k == "sequence_map" for k, _, _ in kinds):
        return "classification"
    if len(outputs) == 2 and any(d in ("int64", "string") for _, d, _ in kinds):
        return "classification"
    if len(outputs) == 1 and kinds[0][1] in ("float32", "float64"):
        shape = kinds[0][2] or []
        if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
            return "regression"
        if len(shape) == 2 and isinstance(shape[1], int) and "Softmax" in info.get("operators", {}):
            return "classification"
        if len(shape) > 2 and class_output(info["signature"]) and "Softmax" in info.get("operators", {}):
            return "classification"  # e.g. squeezenet's [N, 1000, 1, 1] probabilities
    return "other"


def class_output(signature: dict[str, Any]) -> tuple[str, int] | None:
    """The first float output holding one score per class, and its class count.

    ``[N, C]``, or ``[N, C, 1, 1]`` with the singleton dimensions squeezed (model-zoo
    image classifiers); None when no output has a fixed count of two or more classes.
    """
    for out in signature.get("outputs", []):
        shape = out.get("shape") or []
        if out.get("kind") != "tensor" or not str(out.get("dtype", "")).startswith("float") or len(shape) < 2:
            continue
        wide = [d for d in shape[1:] if d != 1]
        if len(shape) == 2 or len(wide) == 1:
            width = wide[0] if wide else 1
            return (out["name"], width) if isinstance(width, int) and width >= 2 else None
    return None


def _check_features(features: Sequence[str], signature: dict[str, Any]) -> None:
    inputs = signature["inputs"]
    if len(inputs) == 1:
        shape = inputs[0].get("shape") or []
        if len(shape) == 2 and isinstance(shape[1], int) and shape[1] != len(features):
            raise InvalidInputError(
                f"{len(features)} feature names given, but input {inputs[0]['name']!r} takes "
                f"{shape[1]} columns; give exactly {shape[1]} names"
            )
    elif len(inputs) > 1:
        names = {i["name"] for i in inputs}
        if set(features) != names:
            raise InvalidInputError(
                f"this model takes one input per column ({', '.join(sorted(names))}); "
                "feature names must be those input names"
            )


def _check_labels(labels: Sequence[str], signature: dict[str, Any]) -> None:
    found = class_output(signature)
    if found is not None and found[1] != len(labels):
        name, width = found
        raise InvalidInputError(
            f"{len(labels)} class labels given, but output {name!r} has {width} classes; "
            f"give exactly {width} labels"
        )


def build_version_meta(report: Any, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split and check user metadata; fill gaps from what ingest found in the file."""
    unknown = set(given) - set(_MODEL_KEYS) - set(_VERSION_KEYS)
    if unknown:
        raise InvalidInputError(
            f"unknown metadata {', '.join(sorted(unknown))}; accepted: "
            f"{', '.join(_MODEL_KEYS + _VERSION_KEYS + ('reference', 'actor'))}"
        )
    suggested = dict(getattr(report, "suggested", {}) or {})
    signature = report.info["signature"]
    merged = {k: v for k, v in given.items() if v not in (None, "", [])}
    for key in ("feature_names", "class_labels", "task", "description"):
        if key not in merged and suggested.get(key):
            merged[key] = suggested[key]
    features = _clean_list(merged.get("feature_names"), "feature names")
    labels = _clean_list(merged.get("class_labels"), "class labels")
    if features:
        _check_features(features, signature)
    if labels:
        _check_labels(labels, signature)
    task = merged.get("task") or ("classification" if labels else infer_task(report.info))
    if task not in TASKS:
        raise InvalidInputError(f"invalid task {task!r}: expected one of {', '.join(TASKS)}")
    model_fields = {"description": merged.get("description"), "tags": merged.get("tags"), "task": task,
                    "visibility": merged.get("visibility")}
    meta: dict[str, Any] = {}
    if features:
        meta["feature_names"] = features
    if labels:
        meta["class_labels"] = labels
    for key in ("preprocessing", "notes", "demo"):
        if merged.get(key) is not None:
            meta[key] = merged[key]
    meta["task"] = task
    return model_fields, meta
