"""What every command shares: the typer ``app``, the ``--token`` portal, errors, and output.

A user error prints one line on stderr and exits 1 (:func:`handles_errors`,
:func:`fail`); :func:`emit` prints JSON with ``--json`` and text otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from ..config import Settings
from ..errors import PortalError

if TYPE_CHECKING:
    from ..core import Portal
    from ..storage.registry import ModelVersion

__all__ = [
    "JsonOpt",
    "app",
    "emit",
    "fail",
    "handles_errors",
    "open_portal",
    "progress_to_stderr",
    "show_text",
    "version_dict",
]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Model Portal: register, serve and inspect ONNX models.")
F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


_TOKEN: dict[str, str | None] = {"token": None}


@app.callback()
def _global_options(
    token: Annotated[str | None, typer.Option(
        "--token", envvar="PORTAL_TOKEN", show_envvar=True,
        help="Act as the user of this API token: their role, ownership and visibility rules apply "
             "(without it the CLI is the local operator of the store, allowed everything).",
    )] = None,
) -> None:
    """Model Portal: register, serve and inspect ONNX models."""
    _TOKEN["token"] = token


def open_portal() -> Portal:
    """The portal, acting for the ``--token`` user if one was given (predictions logged as 'cli')."""
    from ..accounts.auth import Auth
    from ..core import Portal

    portal = Portal.open(settings=Settings.from_env())
    token = _TOKEN["token"]
    user = Auth(portal.registry).authenticate(token) if token else None
    return portal.as_user(user, source="cli")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def handles_errors(func: F) -> F:
    """Turn PortalError (and bad settings) into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PortalError as exc:
            fail(exc.message)
        except (ValueError, OSError) as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else the text ``text()`` makes."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(text())


def progress_to_stderr(line: str) -> None:
    """Show one progress line of a long job on stderr, indented."""
    typer.echo(f"  {line}", err=True)


def version_dict(v: ModelVersion) -> dict[str, Any]:
    """A version as the JSON that ``show``, ``register`` and ``compress`` print."""
    return {
        "ref": v.ref, "name": v.name, "version": v.version, "aliases": list(v.aliases),
        "task": v.task, "description": v.description, "tags": list(v.tags), "size_bytes": v.size_bytes,
        "source_format": v.source_format, "sha256": v.blob_sha, "parent": v.parent, "method": v.method,
        "created_at": v.created_at.isoformat(), "created_by": v.created_by,
        "feature_names": v.feature_names, "class_labels": v.class_labels,
        "signature": v.signature, "opset": v.info.get("opset"), "operators": v.info.get("operators"),
        "parameters": v.info.get("parameters"), "producer": v.info.get("producer"),
        "metadata_props": v.info.get("metadata_props"),
        "warnings": _warnings(v),
    }


def _shape_text(spec: dict[str, Any]) -> str:
    if spec.get("kind") != "tensor":
        return f"{spec.get('kind')}<{spec.get('key_dtype')},{spec.get('value_dtype')}>"
    shape = spec.get("shape")
    dims = "?" if shape is None else ", ".join(str(d) if d is not None else "?" for d in shape)
    return f"{spec['dtype']}[{dims}]"


def _warnings(v: ModelVersion) -> list[str]:
    from ..ingest.testrun import untested_warning  # onnx, only once a version is shown

    return [w for w in (untested_warning(v.info),) if w]


def show_text(v: ModelVersion) -> str:
    """A version as the text ``show`` and ``register`` print: signature, aliases, metadata."""
    lines = [
        f"{v.ref}  ({v.task}, {v.size_bytes / 1024:.1f} KiB, from {v.source_format})",
        f"  aliases:    {', '.join('@' + a for a in v.aliases) or '-'}",
        f"  created:    {v.created_at:%Y-%m-%d %H:%M} by {v.created_by or '-'}",
        f"  parent:     {v.parent or '-'}{'  method: ' + v.method if v.method else ''}",
        f"  opset:      {v.info.get('opset')}   parameters: {v.info.get('parameters'):,}",
        "  inputs:",
        *[f"    {s['name']}: {_shape_text(s)}" for s in v.signature["inputs"]],
        "  outputs:",
        *[f"    {s['name']}: {_shape_text(s)}" for s in v.signature["outputs"]],
    ]
    if v.feature_names:
        lines.append(f"  features:   {', '.join(v.feature_names[:12])}{' ...' if len(v.feature_names) > 12 else ''}")
    if v.class_labels:
        lines.append(f"  classes:    {', '.join(v.class_labels)}")
    if v.description:
        lines.append("  description: " + v.description.strip().split("\n")[0][:100])
    lines += [f"  warning:    {w}" for w in _warnings(v)]
    return "\n".join(lines)
