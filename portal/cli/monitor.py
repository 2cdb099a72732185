"""The ``monitor`` commands: a version's traffic and drift (summary), and pruning the prediction log."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, emit, handles_errors, open_portal

__all__ = ["monitor_app"]

monitor_app = typer.Typer(no_args_is_help=True, help="The prediction log: traffic, latency, errors, input drift.")


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

    p = open_portal()
    version = p.get(ref)
    window = monitor.TimeRange.parse(since, now=monitor.now(p))
    summary = monitor.summarize(p, version.name, None if all_versions else version.version, window)
    drift = input_drift(p, version.ref, window)
    emit({**summary.to_dict(), "drift": drift.to_dict()}, as_json,
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

    p = open_portal()
    days = p.settings.log_retention_days if older_than_days is None else older_than_days
    deleted = prune_log(p, older_than_days=days)
    emit({"deleted": deleted, "older_than_days": days}, as_json,
         lambda: f"deleted {deleted:,} prediction log row(s) older than {days:g} day(s)")
