"""Settings, built once at the edge (CLI, API, Streamlit) from the ``PORTAL_*`` environment.

One parser for every settings object: the variables, their defaults and docs are
listed once, and each is read by one typed reader whose error message users see.

    variables   every ``PORTAL_*`` variable (reader, default, doc) and ``read(env, name)``
    readers     the typed readers: integer, count, positive / non-negative number, port, switch, text, names
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .variables import VARIABLES, Variable, read

__all__ = ["GIB", "MIB", "VARIABLES", "Settings", "Variable", "read"]

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class Settings:
    """Every tunable of the portal; build with :meth:`from_env`, never mutate.

    Sizes are bytes, times seconds.
    """

    home: Path = Path("model_cache")
    db_url: str | None = None
    blob_url: str | None = None
    max_upload_bytes: int = 2 * GIB
    cache_bytes: int = 1024 * MIB
    cache_count: int = 32
    predict_memory_bytes: int = 2 * GIB  # 0: no ceiling (see portal.serving.memlimit)
    sandbox_memory_bytes: int = 8 * GIB
    sandbox_cpu_seconds: int = 300
    sandbox_timeout_seconds: int = 600
    max_image_pixels: int = 40_000_000
    chunk_rows: int = 65_536
    max_zip_ratio: int = 200
    ref_ttl_seconds: float = 1.0
    encryption_key: str | None = field(default=None, repr=False)
    auth: bool = True
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 12 * 3600
    monitor: bool = True
    log_retention_days: int = 30
    log_sample_rows: int = 16
    log_sample_interval_seconds: float = 0.1
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``PORTAL_*`` variables; keyword overrides win over the environment."""
        env = dict(os.environ if env is None else env)
        settings = cls(
            home=Path(read(env, "PORTAL_HOME")),
            db_url=read(env, "PORTAL_DB_URL"),
            blob_url=read(env, "PORTAL_BLOB_URL"),
            max_upload_bytes=read(env, "PORTAL_MAX_UPLOAD_MB") * MIB,
            cache_bytes=read(env, "PORTAL_CACHE_MB") * MIB,
            cache_count=read(env, "PORTAL_CACHE_COUNT"),
            predict_memory_bytes=read(env, "PORTAL_PREDICT_MEMORY_MB") * MIB,
            sandbox_memory_bytes=read(env, "PORTAL_SANDBOX_MEMORY_MB") * MIB,
            sandbox_cpu_seconds=read(env, "PORTAL_SANDBOX_CPU_S"),
            sandbox_timeout_seconds=read(env, "PORTAL_SANDBOX_TIMEOUT_S"),
            max_image_pixels=read(env, "PORTAL_MAX_IMAGE_PIXELS"),
            chunk_rows=read(env, "PORTAL_CHUNK_ROWS"),
            max_zip_ratio=read(env, "PORTAL_MAX_ZIP_RATIO"),
            encryption_key=read(env, "PORTAL_ENCRYPTION_KEY"),
            auth=read(env, "PORTAL_AUTH"),
            session_idle_seconds=read(env, "PORTAL_SESSION_IDLE_MIN") * 60,
            session_max_seconds=read(env, "PORTAL_SESSION_MAX_HOURS") * 3600,
            monitor=read(env, "PORTAL_MONITOR"),
            log_retention_days=read(env, "PORTAL_LOG_RETENTION_DAYS"),
            log_sample_rows=read(env, "PORTAL_LOG_SAMPLE_ROWS"),
            log_sample_interval_seconds=read(env, "PORTAL_LOG_SAMPLE_INTERVAL_MS") / 1000,
        )
        return replace(settings, **overrides) if overrides else settings

    @property
    def resolved_db_url(self) -> str:
        """The database URL: ``PORTAL_DB_URL`` or the SQLite file in the home."""
        return self.db_url or f"sqlite:///{(self.home / 'portal.db').resolve()}"
