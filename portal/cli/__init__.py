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

from ..config import Settings
from ..errors import InvalidInputError, PortalError

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


def _portal() -> Any:
    """The portal, acting for the ``--token`` user if one was given (predictions logged as 'cli')."""
    from ..accounts.auth import Auth
    from ..core import Portal

    portal = Portal.open(settings=Settings.from_env())
    token = _TOKEN["token"]
    user = Auth(portal.registry).authenticate(token) if token else None
    return portal.as_user(user, source="cli")


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
    from ..ingest.metadata import parse_shape

    p = _portal()
    version = p.register(
        path, name, input_shape=parse_shape(input_shape, what="--input-shape", required=False), description=description, task=task,
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
        from ..serving.dataio import write_frame

        write_frame(frame, output, outputs=prediction.outputs)
        _emit({"rows": prediction.rows, "output": str(output)}, as_json,
              lambda: f"wrote {prediction.rows} predictions to {output}")
        return
    _emit(prediction.to_records(), as_json, lambda: frame.to_string(max_rows=50))


@app.command()
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
    p = _portal()
    if owner is not None:
        from ..accounts.auth import Auth

        Auth(p.registry).get_user(owner)  # an unknown user is refused, not made owner
    model = p.update_model(name, **fields)
    _emit({"name": model.name, "description": model.description, "task": model.task, "tags": list(model.tags),
           "visibility": model.visibility, "owner": model.owner}, as_json,
          lambda: f"{model.name}: {', '.join(sorted(fields))} updated")


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
def fsck(
    verify: Annotated[bool, typer.Option("--verify/--quick", help="Re-hash every blob (default) or only check that files exist")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only, repair nothing")] = False,
    grace: Annotated[float, typer.Option(help="Only collect debris older than this many seconds")] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Check that registry and blob files agree; collect orphans (never a referenced blob)."""
    from ..core import Portal

    p = Portal.open(settings=Settings.from_env(), check=False)
    report = p.fsck(repair=not dry_run, verify=verify, grace_seconds=grace)
    _emit(report.__dict__ | {"healthy": report.healthy}, as_json, report.summary)
    if not report.healthy:
        raise typer.Exit(2)


@app.command("backup")
@handles_errors
def backup_command(
    dest: Annotated[Path, typer.Argument(help="Backup file to write (.tar)")],
    as_json: JsonOpt = False,
) -> None:
    """Write a consistent snapshot of the registry and its blobs (safe while the portal runs)."""
    from ..storage.backup import backup

    info = backup(_portal(), dest)
    _emit(info.__dict__, as_json,
          lambda: f"backed up {info.models} models, {info.versions} versions, {info.blobs} blobs "
                  f"({info.bytes / 1024**2:.1f} MiB) to {info.path}")


@app.command("restore")
@handles_errors
def restore_command(
    source: Annotated[Path, typer.Argument(help="Backup file written by `portal backup`")],
    home: Annotated[Path | None, typer.Option(help="Empty directory to restore into (default: PORTAL_HOME)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty home, verifying every file's hash."""
    from ..storage.backup import restore

    from ..storage.crypto import BlobCipher

    settings = Settings.from_env()
    cipher = BlobCipher(settings.encryption_key) if settings.encryption_key else None
    info = restore(source, home or settings.home, cipher=cipher)
    _emit(info.__dict__, as_json,
          lambda: f"restored {info.models} models, {info.versions} versions, {info.blobs} blobs into {info.path}")


@app.command()
@handles_errors
def export(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    dest: Annotated[Path, typer.Argument(help="Model repository directory")],
    fmt: Annotated[str, typer.Option("--format", help="triton, or kserve (triton + InferenceService)")] = "triton",
    storage_uri: Annotated[str | None, typer.Option("--storage-uri", help="KServe storageUri of the repository")] = None,
) -> None:
    """Export a version as a Triton model repository (and a KServe manifest)."""
    from ..storage.export import export_repository

    for path in export_repository(_portal(), ref, dest, fmt=fmt, storage_uri=storage_uri):
        typer.echo(f"wrote {path}")


@app.command()
def keygen() -> None:
    """Print a new random key for PORTAL_ENCRYPTION_KEY."""
    from ..storage.crypto import generate_key

    typer.echo(generate_key())


@app.command("rotate-key")
@handles_errors
def rotate_key(
    decrypt: Annotated[bool, typer.Option("--decrypt", help="Store blobs in plaintext again")] = False,
) -> None:
    """Re-encrypt every blob with PORTAL_NEW_ENCRYPTION_KEY (current key: PORTAL_ENCRYPTION_KEY).

    Stop the portal first; afterwards start it with the new key in PORTAL_ENCRYPTION_KEY.
    """
    import os

    new_key = None if decrypt else os.environ.get("PORTAL_NEW_ENCRYPTION_KEY")
    if not decrypt and not new_key:
        _fail("set PORTAL_NEW_ENCRYPTION_KEY to the new key (`portal keygen`), or pass --decrypt")
    count = _portal().rotate_key(new_key)
    typer.echo(f"rewrote {count} blobs {'in plaintext' if decrypt else 'with the new key'}; "
               "now set PORTAL_ENCRYPTION_KEY to the new key")


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
    app_path = Path(__file__).resolve().parents[2] / "streamlit_app.py"
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
users_app = typer.Typer(no_args_is_help=True, help="Users of the REST API (and the UI) and their roles.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: created once, stored hashed, revocable.")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


@app.command()
@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    grpc_port: Annotated[int, typer.Option(
        envvar="PORTAL_API_GRPC_PORT",
        help="Port of the gRPC door (Open Inference Protocol v2, same host, same tokens); 0: no gRPC")] = 8001,
    workers: Annotated[int, typer.Option(help="Worker processes (each with its own session cache)")] = 1,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Model to batch adaptively (repeatable)")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Serve as a Ray Serve application, models multiplexed across replicas")] = False,
    replicas: Annotated[int | None, typer.Option(help="--ray: model-server replicas (PORTAL_RAY_REPLICAS, default 1)")] = None,
    min_replicas: Annotated[int | None, typer.Option(help="--ray: autoscale, at least this many (PORTAL_RAY_MIN_REPLICAS)")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="--ray: autoscale, at most this many (PORTAL_RAY_MAX_REPLICAS)")] = None,
    target_ongoing_requests: Annotated[float | None, typer.Option(help="--ray: autoscale to keep this many requests per replica (PORTAL_RAY_TARGET_ONGOING_REQUESTS)")] = None,
    models_per_replica: Annotated[int | None, typer.Option(help="--ray: models each replica keeps loaded (PORTAL_RAY_MODELS_PER_REPLICA, default 4)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="--ray: CPUs of the local Ray (PORTAL_RAY_NUM_CPUS, default all)")] = None,
) -> None:
    """Serve every registered model over the REST API (OIP v2 + management, docs at /docs) and OIP v2 over gRPC."""
    import os

    import uvicorn

    if not 0 <= grpc_port <= 65_535 or (grpc_port and grpc_port == port):
        _fail(f"--grpc-port must be a free port other than --port ({port}), from 1 to 65535, or 0 for no gRPC "
              f"(not {grpc_port})")
    if ray:
        from ..api import ray_serve as serve_ray

        if grpc_port:
            typer.echo("gRPC is not served with --ray yet (see README, 'The REST API on Ray Serve'); "
                       "serving HTTP only", err=True)
        os.environ.pop("PORTAL_API_GRPC_PORT", None)  # never handed to the replicas: none of them binds it
        try:
            serve_ray.serve_cli(host=host, port=port, batch=batch, replicas=replicas, min_replicas=min_replicas,
                                max_replicas=max_replicas, target_ongoing_requests=target_ongoing_requests,
                                models_per_replica=models_per_replica, num_cpus=num_cpus,
                                announce=lambda text: typer.echo(text, err=True))
        except ValueError as exc:
            _fail(str(exc))
        return
    if workers < 1:
        _fail("--workers must be at least 1")
    if batch:
        os.environ["PORTAL_API_BATCHING"] = ",".join([*filter(None, os.environ.get("PORTAL_API_BATCHING", "").split(",")), *batch])
    from ..api import ApiSettings

    if grpc_port:
        _check_grpc_port(host, grpc_port)
    # the app factory of each worker reads these: the gRPC door starts inside the app, next to HTTP
    os.environ["PORTAL_API_GRPC_PORT"] = str(grpc_port)
    os.environ["PORTAL_API_GRPC_HOST"] = host
    os.environ["PORTAL_API_GRPC_REUSE_PORT"] = "1" if workers > 1 else "0"
    ApiSettings.from_env()  # bad PORTAL_API_* values fail here, with one line, not in every worker
    grpc_text = f", gRPC on {host}:{grpc_port}" if grpc_port else ""
    typer.echo(f"Model Portal API on http://{host}:{port}{grpc_text}  (docs at /docs, Ctrl+C to stop)", err=True)
    uvicorn.run("portal.api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_level="warning", timeout_graceful_shutdown=10)


def _check_grpc_port(host: str, port: int) -> None:
    """Fail with one line when the gRPC port is taken (the server would stop at startup, with a traceback)."""
    import socket

    from ..api.grpc.server import grpc_port_error

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
    except OSError:
        _fail(grpc_port_error(f"{host}:{port}"))


def _user_text(users: list[Any]) -> str:
    if not users:
        return "no users yet: `portal users add NAME --role admin`"
    width = max(len(u.name) for u in users)
    return "\n".join([f"{'NAME':<{width}}  ROLE     STATE"] +
                     [f"{u.name:<{width}}  {u.role:<7}  {'disabled' if u.disabled else 'active'}" for u in users])


def _auth() -> tuple[Any, Any]:
    """The user store, and who acts: the ``--token`` user (checked by the library) or the local operator."""
    from ..accounts.auth import Auth

    portal = _portal()
    return Auth(portal.registry), portal.user or portal.actor


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password; pipe it in with --password-stdin")
    return str(typer.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
@handles_errors
def users_add(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Option(help="viewer, analyst or admin")] = "viewer",
    as_json: JsonOpt = False,
) -> None:
    """Create a user with a role."""
    auth, actor = _auth()
    user = auth.add_user(name, role, actor=actor)
    _emit({"name": user.name, "role": user.role}, as_json, lambda: f"added {user.role} {user.name}")


@users_app.command("list")
@handles_errors
def users_list(as_json: JsonOpt = False) -> None:
    """List users and their roles."""
    users = _auth()[0].list_users()
    _emit([{"name": u.name, "role": u.role, "disabled": u.disabled} for u in users], as_json,
          lambda: _user_text(users))


@users_app.command("passwd")
@handles_errors
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from stdin")] = False,
) -> None:
    """Set a user's password for the browser portal (asked twice on a terminal; never an argument)."""
    auth, actor = _auth()
    password = _read_password(name, password_stdin)
    current = None
    if not isinstance(actor, str) and actor.role != "admin":  # a user changing their own password
        current = str(typer.prompt("current password", hide_input=True)) if sys.stdin.isatty() else None
    auth.set_password(name, password, actor=actor, current_password=current)
    typer.echo(f"password of {name} set")


@users_app.command("update")
@handles_errors
def users_update(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str | None, typer.Option(help="New role: viewer, analyst or admin")] = None,
    disable: Annotated[bool, typer.Option("--disable", help="Disable: signed out at the next click, tokens refused")] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Enable a disabled user")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a user's role, or disable or enable them."""
    if disable and enable:
        _fail("give --disable or --enable, not both")
    auth, actor = _auth()
    user = auth.update_user(name, role=role, disabled=True if disable else False if enable else None, actor=actor)
    _emit({"name": user.name, "role": user.role, "disabled": user.disabled}, as_json,
          lambda: f"{user.name}: {user.role}, {'disabled' if user.disabled else 'active'}")


@users_app.command("delete")
@handles_errors
def users_delete(
    name: Annotated[str, typer.Argument(help="User name")],
    reassign_to: Annotated[str | None, typer.Option(
        "--reassign-to", metavar="USER", help="Give the models they own to this user (needed while they own any)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user and their tokens (their requests fail at once); their models go to --reassign-to."""
    auth, actor = _auth()
    moved = auth.delete_user(name, actor=actor, reassign_to=reassign_to)
    moved_text = f"; {len(moved)} model(s) now belong to {reassign_to}: {', '.join(moved)}" if moved else ""
    _emit({"deleted": name, "reassigned_to": reassign_to if moved else None, "models": moved}, as_json,
          lambda: f"deleted user {name}{moved_text}")


@tokens_app.command("create")
@handles_errors
def tokens_create(
    name: Annotated[str, typer.Argument(help="User the token belongs to")],
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token; it is printed once and cannot be shown again."""
    auth, actor = _auth()
    new = auth.create_token(name, label=label, actor=actor)
    _emit({"id": new.info.id, "user": new.info.user, "label": new.info.label, "token": new.secret}, as_json,
          lambda: f"{new.secret}\n(token {new.info.id} for {new.info.user}; shown once, store it now)")


@tokens_app.command("list")
@handles_errors
def tokens_list(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (ids, owners, labels; never the secrets)."""
    tokens = _auth()[0].list_tokens(user=user, include_revoked=all_)
    data = [{"id": t.id, "user": t.user, "label": t.label, "prefix": t.prefix, "active": t.active,
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None} for t in tokens]
    _emit(data, as_json, lambda: "\n".join(
        f"{t.id:>4}  {t.user:<16} {t.prefix}…  {'active' if t.active else 'revoked'}  {t.label}" for t in tokens
    ) or "no tokens")


@tokens_app.command("revoke")
@handles_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(metavar="ID", help="Token id (`portal tokens list`)")]) -> None:
    """Revoke a token; requests made with it fail from now on."""
    auth, actor = _auth()
    info = auth.revoke_token(token_id, actor=actor)
    typer.echo(f"revoked token {info.id} of {info.user}")


# -- compression commands (compress, compare) ----------------------------------
def _progress_to_stderr(line: str) -> None:
    typer.echo(f"  {line}", err=True)


@app.command()
@handles_errors
def compress(
    ref: Annotated[str, typer.Argument(help="Version to compress: name, name:3 or name@alias")],
    method: Annotated[str, typer.Option("--method", "-m", help="int8-dynamic, int8-static, fp16, prune or optimized")],
    calibration: Annotated[Path | None, typer.Option(
        help="int8-static: CSV, Parquet, npz or a folder of images (default: the version's reference data)")] = None,
    calibration_method: Annotated[str | None, typer.Option(
        "--calibration-method", help="int8-static: minmax (default), entropy or percentile")] = None,
    sparsity: Annotated[float | None, typer.Option(help="prune: share of weights set to zero, in (0, 1); default 0.5")] = None,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="int8: one scale per output channel")] = False,
    op_types: Annotated[str | None, typer.Option("--op-types", help="int8: operators to quantize, comma-separated")] = None,
    block_ops: Annotated[str | None, typer.Option("--block-ops", help="fp16: operators kept in float32, comma-separated")] = None,
    level: Annotated[str | None, typer.Option(help="optimized: basic, extended (default) or all")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a compressed variant of a version (registered as the model's next version)."""
    from ..compress.variants import create_variant

    version = create_variant(
        _portal(), ref, method, calibration=calibration, calibration_method=calibration_method, sparsity=sparsity,
        per_channel=True if per_channel else None, op_types=op_types.split(",") if op_types else None,
        block_ops=block_ops.split(",") if block_ops else None, level=level, progress=_progress_to_stderr,
    )
    details = version.meta.get("variant", {})
    data = {**_version_dict(version), "method_params": version.method_params, **details}

    def text() -> str:
        lines = [f"created {version.ref} ({version.method} of {version.parent}), {version.size_bytes / 1024:.1f} KiB"]
        return "\n".join(lines + [f"  note: {note}" for note in details.get("notes", [])])

    _emit(data, as_json, text)


def _comparison_text(comparison: Any) -> str:
    table = comparison.table()
    keep = [c for c in table.columns if not c.startswith("p95") and c not in ("Gzip size", "Peak memory")]
    lines = [table[keep].to_string(index=False, float_format=lambda v: f"{v:.4g}"), "", comparison.advice.summary]
    for verdict in comparison.advice.verdicts:
        lines.append(f"{verdict.ref} ({verdict.method}): {verdict.status}")
        lines += [f"  - {reason}" for reason in verdict.reasons]
    lines += [f"{method} not created: {reason}" for method, reason in comparison.refused.items()]
    lines += [f"note: {note}" for note in comparison.notes]
    env = comparison.run.environment
    lines.append(f"measured on {env.get('cpu')} (avx2={env.get('avx2')}, avx512={env.get('avx512')}, "
                 f"vnni={env.get('vnni')}), onnxruntime {env.get('onnxruntime')}, "
                 f"{comparison.run.dataset['rows']} rows of {comparison.run.dataset['source']}")
    return "\n".join(lines)


@app.command()
@handles_errors
def compare(
    ref: Annotated[str, typer.Argument(help="Version whose variants to compare: name, name:3 or name@alias")],
    data: Annotated[Path | None, typer.Option(help="Evaluation data: CSV, Parquet, npz or an image folder (default: reference data)")] = None,
    label_column: Annotated[str | None, typer.Option("--label-column", help="Column of true labels in --data")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all)")] = None,
    calibration: Annotated[Path | None, typer.Option(help="int8-static calibration data (default: reference data)")] = None,
    tolerance: Annotated[float, typer.Option(help="Largest agreement loss accepted, e.g. 0.01 for 1%")] = 0.01,
    objective: Annotated[str, typer.Option(help="latency or size")] = "latency",
    stored: Annotated[bool, typer.Option("--stored", help="Show the stored comparison; measure nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create the variants of a version, measure them side by side, and say which to serve."""
    from ..errors import NotFoundError
    from ..compress.variants import compare as run_compare
    from ..compress.variants import load_comparison

    p = _portal()
    if stored:
        found = load_comparison(p, p.get(ref).ref, tolerance=tolerance, objective=objective)
        if found is None:
            raise NotFoundError(f"{ref} has no stored comparison; run `portal compare {ref}` first")
        comparison = found
    else:
        comparison = run_compare(
            p, ref, data=data, label_column=label_column, calibration=calibration, tolerance=tolerance,
            objective=objective, methods=[m.strip() for m in methods.split(",")] if methods else None,
            progress=_progress_to_stderr,
        )
    _emit(comparison.to_dict(), as_json, lambda: _comparison_text(comparison))


# -- explanation commands (explain) --------------------------------------------
def _explain_input(path: Path, rows: int) -> Any:
    from ..serving.dataio import read_input

    data = read_input(path)
    if hasattr(data, "iloc"):
        return data.iloc[:rows]
    if isinstance(data, dict):
        return {k: v[:rows] for k, v in data.items()}
    return data[:rows]


def _check_explanation_output(output: Path | None, images: bool) -> None:
    suffixes = (".html", ".json") if images else (".csv", ".html", ".json")
    if output is not None and output.suffix.lower() not in suffixes:
        raise InvalidInputError(
            f"cannot write an explanation to {output.name!r}: use a {', '.join(suffixes[:-1])} or {suffixes[-1]} file"
        )


def _write_explanation(explanation: Any, output: Path, target: str | None) -> None:
    from ..explain.figures import html_report, shap_csv
    from ..explain.lime_figures import lime_csv, lime_report
    from ..explain.lime_types import LimeImageExplanation, LimeTabularExplanation
    from ..explain.types import TabularExplanation

    suffix = output.suffix.lower()
    lime = isinstance(explanation, (LimeTabularExplanation, LimeImageExplanation))
    if suffix == ".csv":
        output.write_bytes(lime_csv(explanation) if lime else shap_csv(explanation, target=target))
    elif suffix == ".html":
        if lime:
            output.write_text(lime_report(explanation))
        else:
            tabular = isinstance(explanation, TabularExplanation)
            output.write_text(html_report(explanation, target=target) if tabular else html_report(explanation))
    else:
        output.write_text(json.dumps(_explanation_dict(explanation, target), default=str))


def _explanation_dict(explanation: Any, target: str | None) -> dict[str, Any]:
    """Tabular explanations take the target (SHAP picks it, LIME checks it); image ones do not."""
    return explanation.to_dict(target) if hasattr(explanation, "select") else explanation.to_dict()


def _explain_agreement(p: Any, ref: str, data: Any, background: Path | None, target: str | None,
                       settings: Any, top_k: int, output: Path | None, as_json: bool) -> None:
    from ..explain import explain_agreement
    from ..explain.lime_figures import lime_report

    if output is not None and output.suffix.lower() not in (".html", ".json"):
        raise InvalidInputError(f"cannot write an agreement report to {output.name!r}: use a .html or .json file")
    report = explain_agreement(p, ref, data, background=background, target=target, settings=settings, top_k=top_k)
    if output is not None:
        text = lime_report(report) if output.suffix.lower() == ".html" else json.dumps(report.to_dict(), default=str)
        output.write_text(text)
    _emit(report.to_dict(), as_json, lambda: report.describe() + (f"\nwrote {output}" if output is not None else ""))


@app.command()
@handles_errors
def explain(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Rows (.csv, .parquet, .json, .npz) or an image")],
    background: Annotated[Path | None, typer.Option(help="Background table (default: the version's reference data)")] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=1, help="Explain the first N rows of the input")] = 10,
    target: Annotated[str | None, typer.Option(help="Class or output to explain (default: the predicted class)")] = None,
    method: Annotated[str, typer.Option(help="shap or lime")] = "shap",
    max_evals: Annotated[int | None, typer.Option("--max-evals", min=1, help="SHAP: evaluations per row")] = None,
    samples: Annotated[int | None, typer.Option(
        "--samples", min=1, help="LIME: samples per row (default 5000) or image (default 1000)")] = None,
    agreement: Annotated[bool, typer.Option(
        "--agreement", help="Explain the rows with SHAP and LIME and compare them (table rows only)")] = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="--agreement: top features compared per row")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for sampling and permutations")] = 0,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write values (.csv), a report (.html) or JSON")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain a model's answers on rows (or an image) with SHAP or LIME, or compare the two."""
    from ..explain import ExplainSettings, explain_images, explain_rows
    from ..serving.images import IMAGE_SUFFIXES

    images = input.suffix.lower() in IMAGE_SUFFIXES
    if method not in ("shap", "lime"):
        raise InvalidInputError(f"invalid method {method!r}: use shap or lime")
    if agreement and images:
        raise InvalidInputError("--agreement compares SHAP and LIME on table rows; give a table, not an image")
    if not agreement:
        _check_explanation_output(output, images)
    p = _portal()
    settings = ExplainSettings(max_evals=max_evals, seed=seed, method=method, lime_samples=samples)
    if images:
        if background is not None:
            raise InvalidInputError("--background applies to table rows; image explanations blur the image instead")
        result: Any = explain_images(p, ref, [input], target=target, settings=settings)
    else:
        if not input.is_file():
            raise InvalidInputError(f"no such file: {input}")
        if agreement:
            _explain_agreement(p, ref, _explain_input(input, rows), background, target, settings, top_k, output,
                               as_json)
            return
        result = explain_rows(p, ref, _explain_input(input, rows), background=background, target=target, settings=settings)
    data = _explanation_dict(result, target)
    if output is not None:
        _write_explanation(result, output, target)
    text = (lambda: result.describe(target)) if hasattr(result, "select") else result.describe
    _emit(data, as_json, lambda: text() + (f"\nwrote {output}" if output is not None else ""))


# -- monitoring commands (monitor summary, monitor prune) ----------------------
monitor_app = typer.Typer(no_args_is_help=True, help="The prediction log: traffic, latency, errors, input drift.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("summary")
@handles_errors
def monitor_summary(
    ref: Annotated[str, typer.Argument(help="name (latest version), name:3 or name@alias")],
    since: Annotated[str, typer.Option(help="Window up to now: 1h, 24h, 7d, 30d, 90m, ... or a UTC date/time")] = "24h",
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Traffic of every version of the model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Requests, rows, latency p50/p95, errors, cache hit ratio and input drift (PSI) of a model version."""
    from ..monitor import stats as monitor
    from ..monitor.drift import input_drift

    p = _portal()
    version = p.get(ref)
    window = monitor.TimeRange.parse(since, now=monitor.now(p))
    summary = monitor.summarize(p, version.name, None if all_versions else version.version, window)
    drift = input_drift(p, version.ref, window)
    _emit({**summary.to_dict(), "drift": drift.to_dict()}, as_json,
          lambda: summary.describe() + "\n" + drift.describe())


@monitor_app.command("prune")
@handles_errors
def monitor_prune(
    older_than_days: Annotated[float | None, typer.Option(
        "--older-than-days", help="Delete rows older than this (default: PORTAL_LOG_RETENTION_DAYS, 30)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete old rows of the prediction log (the portal also prunes past the retention once an hour)."""
    from ..monitor.stats import prune_log

    p = _portal()
    days = p.settings.log_retention_days if older_than_days is None else older_than_days
    deleted = prune_log(p, older_than_days=days)
    _emit({"deleted": deleted, "older_than_days": days}, as_json,
          lambda: f"deleted {deleted:,} prediction log row(s) older than {days:g} day(s)")


def main() -> None:
    """Entry point of the ``portal`` console script."""
    app()

