"""The ``portal`` command line (typer).

Human-readable output by default, JSON with ``--json``.  A user error prints one
line on stderr and exits 1; never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .config import Settings
from .errors import InvalidInputError, PortalError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Model Portal: register, serve and inspect ONNX models.")
F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _portal() -> Any:
    from .core import Portal

    return Portal.open(settings=Settings.from_env())


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def handles_errors(func: F) -> F:
    """Turn PortalError (and bad settings) into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PortalError as exc:
            _fail(exc.message)
        except (ValueError, OSError) as exc:
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(text())


def _parse_shape(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise InvalidInputError(f"invalid --input-shape {text!r}: expected integers like 1,3,224,224") from None
    if not dims or any(d < 1 for d in dims):
        raise InvalidInputError(f"invalid --input-shape {text!r}: expected positive integers like 1,3,224,224")
    return dims


def _version_dict(v: Any) -> dict[str, Any]:
    return {
        "ref": v.ref, "name": v.name, "version": v.version, "aliases": list(v.aliases),
        "task": v.task, "description": v.description, "tags": list(v.tags), "size_bytes": v.size_bytes,
        "source_format": v.source_format, "sha256": v.blob_sha, "parent": v.parent, "method": v.method,
        "created_at": v.created_at.isoformat(), "created_by": v.created_by,
        "feature_names": v.feature_names, "class_labels": v.class_labels,
        "signature": v.signature, "opset": v.info.get("opset"), "operators": v.info.get("operators"),
        "parameters": v.info.get("parameters"), "producer": v.info.get("producer"),
        "metadata_props": v.info.get("metadata_props"),
    }


def _shape_text(spec: dict[str, Any]) -> str:
    if spec.get("kind") != "tensor":
        return f"{spec.get('kind')}<{spec.get('key_dtype')},{spec.get('value_dtype')}>"
    shape = spec.get("shape")
    dims = "?" if shape is None else ", ".join(str(d) if d is not None else "?" for d in shape)
    return f"{spec['dtype']}[{dims}]"


def _show_text(v: Any) -> str:
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
    return "\n".join(lines)


@app.command()
@handles_errors
def register(
    path: Annotated[Path, typer.Argument(help="Model file: .onnx, .zip bundle, .pt2, TorchScript, .skops")],
    name: Annotated[str | None, typer.Option(help="Model name (default: from the file name)")] = None,
    description: Annotated[str | None, typer.Option(help="Markdown model card")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="PyTorch input shape, e.g. 1,3,224,224")] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression or other")] = None,
    tags: Annotated[str | None, typer.Option(help="Comma-separated tags")] = None,
    feature_names: Annotated[str | None, typer.Option("--feature-names", help="Comma-separated feature names")] = None,
    class_labels: Annotated[str | None, typer.Option("--class-labels", help="Comma-separated class labels")] = None,
    reference: Annotated[Path | None, typer.Option(help="Reference data (CSV/Parquet) kept with the version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate, convert and register a model file as the next version of NAME."""
    p = _portal()
    version = p.register(
        path, name, input_shape=_parse_shape(input_shape), description=description, task=task,
        tags=tags, feature_names=feature_names, class_labels=class_labels, reference=reference,
    )
    _emit(_version_dict(version), as_json, lambda: f"registered {version.ref}\n" + _show_text(version))


@app.command("list")
@handles_errors
def list_models(as_json: JsonOpt = False) -> None:
    """List registered models."""
    models = _portal().list_models()
    data = [
        {"name": m.name, "versions": len(m.versions), "latest": m.latest.version if m.latest else None,
         "aliases": m.aliases, "task": m.task, "tags": list(m.tags), "updated_at": m.updated_at.isoformat()}
        for m in models
    ]

    def text() -> str:
        if not models:
            return "no models yet: `portal register FILE` or `portal demo`"
        width = max(len(m.name) for m in models)
        rows = [f"{'NAME':<{width}}  VERSIONS  LATEST  TASK            ALIASES"]
        for m in models:
            aliases = ", ".join(f"@{a}→{n}" for a, n in m.aliases.items()) or "-"
            rows.append(f"{m.name:<{width}}  {len(m.versions):>8}  {m.latest.version if m.latest else '-':>6}  {m.task:<14}  {aliases}")
        return "\n".join(rows)

    _emit(data, as_json, text)


@app.command()
@handles_errors
def show(ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")], as_json: JsonOpt = False) -> None:
    """Show one version: signature, metadata, aliases."""
    version = _portal().get(ref)
    _emit(_version_dict(version), as_json, lambda: _show_text(version))


@app.command()
@handles_errors
def predict(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".csv, .parquet, .json, .npz, .npy or an image")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write results (.csv, .json, .parquet, .npz)")] = None,
    ignore_extra: Annotated[bool, typer.Option("--ignore-extra-columns", help="Drop columns the model does not use")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict with a model on a file."""
    p = _portal()
    extra = "ignore" if ignore_extra else "error"
    if output is not None and output.suffix.lower() in (".csv", ".parquet") and input.suffix.lower() in (".csv", ".parquet"):
        summary = p.predict_file(ref, input, output, extra_columns=extra)
        rows = int(summary["rows"].iloc[0])
        _emit({"rows": rows, "output": str(output)}, as_json, lambda: f"wrote {rows} predictions to {output}")
        return
    prediction = p.predict(ref, input, extra_columns=extra)
    frame = prediction.to_frame()
    if output is not None:
        from .dataio import write_frame

        write_frame(frame, output, outputs=prediction.outputs)
        _emit({"rows": prediction.rows, "output": str(output)}, as_json,
              lambda: f"wrote {prediction.rows} predictions to {output}")
        return
    _emit(prediction.to_records(), as_json, lambda: frame.to_string(max_rows=50))


@app.command()
@handles_errors
def alias(
    ref: Annotated[str, typer.Argument(help="Version to point at: name:3")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias instead")] = False,
) -> None:
    """Point an alias at a version (promote / roll back), or remove it."""
    p = _portal()
    if remove:
        p.remove_alias(ref.split(":")[0].split("@")[0], alias_name)
        typer.echo(f"removed alias @{alias_name}")
        return
    version = p.set_alias(ref, alias_name)
    typer.echo(f"{version.name}@{alias_name} → {version.ref}")


@app.command()
@handles_errors
def delete(
    ref: Annotated[str, typer.Argument(help="name (all versions) or name:3")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    force: Annotated[bool, typer.Option("--force", help="Also when aliases or variants point at it")] = False,
) -> None:
    """Delete a version or a whole model."""
    if not yes:
        if not sys.stdin.isatty():
            _fail("refusing to delete without confirmation; add --yes")
        typer.confirm(f"delete {ref}?", abort=True)
    gone = _portal().delete(ref, force=force)
    typer.echo(f"deleted {', '.join(gone)}")


@app.command()
@handles_errors
def demo(as_json: JsonOpt = False) -> None:
    """Register the demo models (skipped when already there)."""
    added = _portal().load_demo(progress=lambda name: typer.echo(f"building {name} ...", err=True))
    _emit([v.ref for v in added], as_json,
          lambda: ("registered " + ", ".join(v.ref for v in added)) if added else "demo models already registered")


@app.command()
@handles_errors
def ui(
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8501,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Register the demo models first")] = False,
) -> None:
    """Start the Streamlit portal in the browser."""
    import os
    import subprocess

    if demo:
        added = _portal().load_demo(progress=lambda name: typer.echo(f"building demo model {name} ...", err=True))
        if added:
            typer.echo("registered " + ", ".join(v.ref for v in added), err=True)
    app_path = Path(__file__).resolve().parent.parent / "streamlit_app.py"
    if not app_path.is_file():
        _fail(f"streamlit_app.py not found next to the portal package ({app_path})")
    settings = Settings.from_env()
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max(1, settings.max_upload_bytes // 1024**2)),
    ]
    typer.echo(f"Model Portal on http://{host}:{port}  (Ctrl+C to stop)", err=True)
    env = dict(os.environ, PORTAL_HOME=str(settings.home.resolve()))
    raise typer.Exit(subprocess.call(command, cwd=app_path.parent, env=env))


# -- REST API commands (serve, users, tokens) ---------------------------------


def main() -> None:
    """Entry point of the ``portal`` console script."""
    app()


if __name__ == "__main__":
    main()
