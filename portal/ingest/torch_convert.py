"""Convert TorchScript archives and ``torch.export`` programs (.pt2) to ONNX.

Runs inside the sandboxed child only. Measured with torch 2.14 on 2 CPU cores:
the dynamo exporter refuses every ``torch.jit`` ScriptModule (``torch.export``
cannot trace them), so TorchScript goes straight to the TorchScript exporter
(``dynamo=False``, ~0.05 s); ``.pt2`` programs re-export through dynamo (~1 s).
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from portal.errors import InputShapeRequiredError, InvalidModelError
from portal.ingest.onnx_check import Conversion, first_line, raise_if_memory

__all__ = ["OPSET", "convert_exported_program", "convert_torchscript"]

OPSET = 18
_SHAPE_HINT = "e.g. --input-shape 1,3,224,224 (CLI) or the Input shape field (UI)"


@contextlib.contextmanager
def _weights_only_loading() -> Iterator[None]:
    """Force ``torch.load(weights_only=True)`` and forbid plain pickle while a .pt2 loads.

    ``torch.export.load`` in torch 2.14 retries sample inputs and constants with
    ``weights_only=False`` (full unpickling) when the safe load fails; a crafted
    archive would run code at that point.
    """
    from torch.export.pt2_archive import _package

    original_load = torch.load
    original_pickle = _package.pickle

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    class _NoPickle:
        def __getattr__(self, name: str) -> Any:
            raise InvalidModelError("the .pt2 archive holds a pickled object; pickles are never loaded")

    torch.load = safe_load  # type: ignore[assignment]
    _package.pickle = _NoPickle()  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = original_load
        _package.pickle = original_pickle


def _example(shape: Sequence[int]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(tuple(int(d) for d in shape), generator=generator)


def _output_names(outputs: Any) -> list[str]:
    if isinstance(outputs, torch.Tensor):
        return ["output"]
    if isinstance(outputs, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in outputs):
        return [f"output_{i}" for i in range(len(outputs))]
    raise InvalidModelError(
        f"the model returns {type(outputs).__name__}; only a tensor or a tuple of tensors can be converted"
    )


def _run(module: Callable[..., Any], args: tuple[Any, ...], shape_text: str) -> Any:
    try:
        with torch.no_grad():
            return module(*args)
    except Exception as exc:  # noqa: BLE001 - any model code failure
        raise_if_memory(exc)
        raise InvalidModelError(
            f"the model failed on an input of shape {shape_text}: {first_line(exc)}; "
            f"check the input shape ({_SHAPE_HINT})"
        ) from exc


def _traced_shape(module: torch.jit.ScriptModule) -> list[int] | None:
    """The example input shape ``torch.jit.trace`` stored in the archive, if any."""
    try:
        traced = dict(module._c._retrieve_traced_inputs())
    except (AttributeError, RuntimeError):
        return None
    inputs: Sequence[Any] = traced.get("forward") or ()
    if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and inputs[0].dim():
        return list(inputs[0].shape)
    return None


def _torchscript_input_count(module: torch.jit.ScriptModule) -> int:
    schema = getattr(module.forward, "schema", None)
    return len(schema.arguments) - 1 if schema is not None else 1


def convert_torchscript(
    path: Path, out: Path, *, input_shape: Sequence[int] | None, check: Callable[[Path], bool]
) -> Conversion:
    """Convert a TorchScript archive to ONNX with a dynamic batch dimension."""
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError and friends
        raise_if_memory(exc)
        raise InvalidModelError(f"torch.jit.load could not read the TorchScript archive: {first_line(exc)}") from exc
    shape = list(input_shape) if input_shape else _traced_shape(module)
    if not shape:
        raise InputShapeRequiredError(
            f"the portal cannot infer the input shape of this TorchScript model; give it, {_SHAPE_HINT}"
        )
    if _torchscript_input_count(module) != 1:
        raise InvalidModelError("only single-input TorchScript models can be converted; export it as .pt2 instead")
    example = _example(shape)
    names = _output_names(_run(module, (example,), str(shape)))
    result = Conversion()
    axes = {name: {0: "batch"} for name in ["input", *names]}
    _export_torchscript(module, example, out, names, axes)
    if check(out):
        result.warnings.append(f"converted from TorchScript with input shape {shape}; batch dimension made dynamic")
        return result
    _export_torchscript(module, example, out, names, None)
    result.warnings.append(
        f"converted from TorchScript with input shape {shape}; the batch dimension could not be made "
        f"dynamic, so the model only accepts batches of {shape[0]}"
    )
    return result


def _export_torchscript(
    module: torch.jit.ScriptModule, example: torch.Tensor, out: Path, names: list[str], axes: dict[str, Any] | None
) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), str(out), dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=names, dynamic_axes=axes,
            )
    except Exception as exc:  # noqa: BLE001
        raise_if_memory(exc)
        raise InvalidModelError(f"torch.onnx.export could not convert the TorchScript model: {first_line(exc)}") from exc


def _load_exported_program(path: Path) -> Any:
    try:
        with _weights_only_loading():
            return torch.export.load(str(path))
    except InvalidModelError:
        raise
    except pickle.UnpicklingError as exc:
        found = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
        raise InvalidModelError(
            "the .pt2 archive holds pickled objects that only a full (code-running) unpickler could load; "
            f"they are refused. {found}".strip()
        ) from exc
    except Exception as exc:  # noqa: BLE001
        raise_if_memory(exc)
        raise InvalidModelError(f"torch.export.load could not read the .pt2 archive: {first_line(exc)}") from exc


def _program_args(program: Any, input_shape: Sequence[int] | None) -> tuple[torch.Tensor, ...]:
    user_inputs = list(program.graph_signature.user_inputs)
    if input_shape:
        if len(user_inputs) != 1:
            raise InvalidModelError(f"the program takes {len(user_inputs)} inputs; an input shape fits single-input models only")
        return (_example(input_shape),)
    args, kwargs = program.example_inputs or ((), {})
    if not args or kwargs or not all(isinstance(a, torch.Tensor) for a in args):
        raise InputShapeRequiredError(
            f"the .pt2 archive holds no usable example inputs, so the input shape is unknown; give it, {_SHAPE_HINT}"
        )
    return tuple(args)


def _batched(args: tuple[torch.Tensor, ...], batch: int) -> tuple[torch.Tensor, ...]:
    """Example inputs with a batch of ``batch``: a batch of 1 would be specialised as a constant."""
    return tuple(a.expand(batch, *a.shape[1:]).clone() if a.dim() and a.shape[0] == 1 else a for a in args)


def convert_exported_program(
    path: Path, out: Path, *, input_shape: Sequence[int] | None, check: Callable[[Path], bool]
) -> Conversion:
    """Convert a ``torch.export`` archive (.pt2) to ONNX with a dynamic batch dimension."""
    program = _load_exported_program(path)
    args = _program_args(program, input_shape)
    shapes = [list(a.shape) for a in args]
    names = [str(n) for n in program.graph_signature.user_inputs]
    result = Conversion()
    module = program.module(check_guards=False)
    module.validate_inputs = False  # let the re-export vary the batch size the program was saved with
    outputs = _run(module, args, str(shapes))
    out_names = _output_names(outputs)
    try:
        _export_dynamo(module, _batched(args, 2), out, names, out_names, dynamic=True)
        if check(out):
            result.warnings.append(f"converted from .pt2 with input shapes {shapes}; batch dimension made dynamic")
            return result
    except InvalidModelError:
        pass
    _export_dynamo(module, args, out, names, out_names, dynamic=False)
    result.warnings.append(
        f"converted from .pt2 with input shapes {shapes}; the batch dimension could not be made dynamic, "
        "so the model only accepts these shapes"
    )
    return result


def _export_dynamo(
    module: Any, args: tuple[torch.Tensor, ...], out: Path, names: list[str], out_names: list[str], *, dynamic: bool
) -> None:
    dynamic_shapes = tuple({0: "batch"} if a.dim() else {} for a in args) if dynamic else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, str(out), dynamo=True, external_data=False, opset_version=OPSET,
                input_names=names, output_names=out_names, dynamic_shapes=dynamic_shapes, verbose=False,
            )
    except Exception as exc:  # noqa: BLE001
        raise_if_memory(exc)
        raise InvalidModelError(f"torch.onnx.export could not convert the .pt2 program: {first_line(exc)}") from exc

