"""Commands on the registry: register, list, show, edit, alias, delete, and the demo models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidInputError
from .common import JsonOpt, emit, fail, handles_errors, open_portal, show_text, version_dict

__all__ = ["alias", "delete", "demo", "edit", "list_models", "register", "show"]


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
    from ..ingest.metadata import parse_shape

    p = open_portal()
    version = p.register(
        path, name, input_shape=parse_shape(input_shape, what="--input-shape", required=False), description=description, task=task,
        tags=tags, feature_names=feature_names, class_labels=class_labels, reference=reference,
    )
    emit(version_dict(version), as_json, lambda: f"registered {version.ref}\n" + show_text(version))


@handles_errors
def list_models(as_json: JsonOpt = False) -> None:
    """List registered models."""
    models = open_portal().list_models()
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

    emit(data, as_json, text)


@handles_errors
def show(ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")], as_json: JsonOpt = False) -> None:
    """Show one version: signature, metadata, aliases."""
    version = open_portal().get(ref)
    emit(version_dict(version), as_json, lambda: show_text(version))


@handles_errors
def edit(
    name: Annotated[str, typer.Argument(help="Model name")],
    description: Annotated[str | None, typer.Option(help="New description (Markdown)")] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression or other")] = None,
    tags: Annotated[str | None, typer.Option(help="Comma-separated tags (replaces them)")] = None,
    visibility: Annotated[str | None, typer.Option(help="private (owner and admins) or shared (everyone)")] = None,
    owner: Annotated[str | None, typer.Option(help="New owner (admins only)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Edit a model's description, task, tags, visibility or owner."""
    fields = {"description": description, "task": task, "visibility": visibility, "owner": owner,
              "tags": [t.strip() for t in tags.split(",") if t.strip()] if tags is not None else None}
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        raise InvalidInputError("nothing to change: give --description, --task, --tags, --visibility or --owner")
    p = open_portal()
    if owner is not None:
        from ..accounts.auth import Auth

        Auth(p.registry).get_user(owner)  # an unknown user is refused, not made owner
    model = p.update_model(name, **fields)
    emit({"name": model.name, "description": model.description, "task": model.task, "tags": list(model.tags),
          "visibility": model.visibility, "owner": model.owner}, as_json,
         lambda: f"{model.name}: {', '.join(sorted(fields))} updated")


@handles_errors
def alias(
    ref: Annotated[str, typer.Argument(help="Version to point at: name:3")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. production")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias instead")] = False,
    override_gate: Annotated[bool, typer.Option(
        "--override-gate", help="Move it even though the variant failed its evaluation gate (audited)")] = False,
) -> None:
    """Point an alias at a version (promote / roll back), or remove it.

    A variant that failed the evaluation gate of its latest gated comparison is refused unless --override-gate.
    """
    p = open_portal()
    if remove:
        p.remove_alias(ref.split(":")[0].split("@")[0], alias_name)
        typer.echo(f"removed alias @{alias_name}")
        return
    version = p.set_alias(ref, alias_name, override_gate=override_gate)
    typer.echo(f"{version.name}@{alias_name} → {version.ref}")


@handles_errors
def delete(
    ref: Annotated[str, typer.Argument(help="name (all versions) or name:3")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    force: Annotated[bool, typer.Option("--force", help="Also when aliases or variants point at it")] = False,
) -> None:
    """Delete a version or a whole model."""
    if not yes:
        if not sys.stdin.isatty():
            fail("refusing to delete without confirmation; add --yes")
        typer.confirm(f"delete {ref}?", abort=True)
    gone = open_portal().delete(ref, force=force)
    typer.echo(f"deleted {', '.join(gone)}")


@handles_errors
def demo(as_json: JsonOpt = False) -> None:
    """Register the demo models (skipped when already there)."""
    added = open_portal().load_demo(progress=lambda name: typer.echo(f"building {name} ...", err=True))
    emit([v.ref for v in added], as_json,
         lambda: ("registered " + ", ".join(v.ref for v in added)) if added else "demo models already registered")
