"""What the builders share in the sandboxed child: opset upgrade, quantization pre-processing, plain errors.

Third-party failures are translated here into :class:`~portal.errors.InvalidModelError`
with a message a user can act on.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ...errors import InvalidModelError
from .base import Progress

__all__ = ["count_ops", "ensure_opset", "first_line", "pre_process"]


def _default_opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def ensure_opset(model: onnx.ModelProto, target: int, notes: list[str], progress: Progress) -> onnx.ModelProto:
    """``model`` at opset ``target`` or newer, upgraded with the ONNX version converter if needed."""
    current = _default_opset(model)
    if current >= target:
        return model
    progress(f"upgrading opset {current} → {target}")
    from onnx import helper, version_converter

    unknown = _unknown_ops(model)
    if unknown:
        raise InvalidModelError(
            f"this model uses opset {current}, and quantization needs opset {target} or newer; the ONNX version "
            f"converter cannot upgrade it because {', '.join(unknown)} no longer exist(s) in ONNX (experimental "
            f"operators removed in later opsets); re-export the model with opset {target} or newer"
        )
    try:
        upgraded = version_converter.convert_version(model, target)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError / ValidationError / ConvertError
        raise InvalidModelError(
            f"this model uses opset {current}, and quantization needs opset {target} or newer; the ONNX version "
            f"converter could not upgrade it ({first_line(exc)}); re-export the model with opset {target} or newer"
        ) from exc
    upgraded.ir_version = max(int(upgraded.ir_version), helper.find_min_ir_version_for(list(upgraded.opset_import)))
    notes.append(f"opset upgraded from {current} to {target} with the ONNX version converter")
    return upgraded


def first_line(exc: BaseException) -> str:
    """The first line of a third-party error, without the C++ converter's file:line prefix."""
    text = str(exc).strip().split("\n")[0]
    if "Assertion" in text and "failed: " in text:  # the C++ converter prefixes file:line and the assertion
        text = text.split("failed: ", 1)[1]
    return text[:300] or type(exc).__name__


def _unknown_ops(model: onnx.ModelProto) -> list[str]:
    """Operators of the default domain that the installed onnx no longer defines (old experimental ops)."""
    return sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})


def pre_process(model: onnx.ModelProto, scratch: Path, notes: list[str], progress: Progress) -> onnx.ModelProto:
    """``quant_pre_process`` (shape inference + basic optimizations); skipped with a note if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    progress("pre-processing (quant_pre_process)")
    src, out = scratch / "pre-in.onnx", scratch / "pre-out.onnx"
    onnx.save(model, str(src))
    for skip_symbolic in (False, True):
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=skip_symbolic)
            if skip_symbolic:
                notes.append("quant_pre_process ran without symbolic shape inference, which failed on this graph")
            return onnx.load(str(out))
        except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation, never a requirement
            failure = first_line(exc)
    notes.append(f"quant_pre_process could not run on this graph ({failure}); quantized without it")
    return model


def count_ops(path: Path, ops: tuple[str, ...]) -> int:
    """How many nodes of the model at ``path`` are one of ``ops``."""
    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in ops)
