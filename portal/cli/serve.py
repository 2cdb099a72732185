"""Commands that start a server: ``ui`` (Streamlit) and ``serve`` (REST + gRPC, or Ray Serve)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings
from .common import fail, handles_errors, open_portal

__all__ = ["serve", "ui"]


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
        added = open_portal().load_demo(progress=lambda name: typer.echo(f"building demo model {name} ...", err=True))
        if added:
            typer.echo("registered " + ", ".join(v.ref for v in added), err=True)
    app_path = Path(__file__).resolve().parents[2] / "streamlit_app.py"
    if not app_path.is_file():
        fail(f"streamlit_app.py not found next to the portal package ({app_path})")
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
    if not 0 <= grpc_port <= 65_535 or (grpc_port and grpc_port == port):
        fail(f"--grpc-port must be a free port other than --port ({port}), from 1 to 65535, or 0 for no gRPC "
             f"(not {grpc_port})")
    if ray:
        _serve_ray(host, port, grpc_port, batch, replicas=replicas, min_replicas=min_replicas,
                   max_replicas=max_replicas, target_ongoing_requests=target_ongoing_requests,
                   models_per_replica=models_per_replica, num_cpus=num_cpus)
        return
    if workers < 1:
        fail("--workers must be at least 1")
    _serve_uvicorn(host, port, grpc_port, workers, batch)


def _serve_ray(host: str, port: int, grpc_port: int, batch: list[str] | None, **scaling: Any) -> None:
    """``serve --ray``: HTTP only, through Ray Serve; bad scaling settings fail with one line."""
    import os

    from ..api import ray_serve as serve_ray

    if grpc_port:
        typer.echo("gRPC is not served with --ray yet (see README, 'The REST API on Ray Serve'); "
                   "serving HTTP only", err=True)
    os.environ.pop("PORTAL_API_GRPC_PORT", None)  # never handed to the replicas: none of them binds it
    try:
        serve_ray.serve_cli(host=host, port=port, batch=batch, **scaling,
                            announce=lambda text: typer.echo(text, err=True))
    except ValueError as exc:
        fail(str(exc))


def _serve_uvicorn(host: str, port: int, grpc_port: int, workers: int, batch: list[str] | None) -> None:
    """``serve``: uvicorn workers, each starting the gRPC door next to HTTP."""
    import os

    import uvicorn

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
        fail(grpc_port_error(f"{host}:{port}"))

