"""Settings, built once at the edge (CLI, API, Streamlit) from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["Settings"]

GIB = 1024**3
MIB = 1024**2


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer (not {raw!r})") from None


_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")


def _env_switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise ValueError(f"{name} must be on or off (not {raw!r})")


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
            home=Path(env.get("PORTAL_HOME") or "model_cache"),
            db_url=env.get("PORTAL_DB_URL") or None,
            blob_url=env.get("PORTAL_BLOB_URL") or None,
            max_upload_bytes=_env_int(env, "PORTAL_MAX_UPLOAD_MB", 2048) * MIB,
            cache_bytes=_env_int(env, "PORTAL_CACHE_MB", 1024) * MIB,
            cache_count=_env_int(env, "PORTAL_CACHE_COUNT", 32),
            predict_memory_bytes=_env_int(env, "PORTAL_PREDICT_MEMORY_MB", 2048) * MIB,
            sandbox_memory_bytes=_env_int(env, "PORTAL_SANDBOX_MEMORY_MB", 8192) * MIB,
            sandbox_cpu_seconds=_env_int(env, "PORTAL_SANDBOX_CPU_S", 300),
            sandbox_timeout_seconds=_env_int(env, "PORTAL_SANDBOX_TIMEOUT_S", 600),
            max_image_pixels=_env_int(env, "PORTAL_MAX_IMAGE_PIXELS", 40_000_000),
            chunk_rows=_env_int(env, "PORTAL_CHUNK_ROWS", 65_536),
            max_zip_ratio=_env_int(env, "PORTAL_MAX_ZIP_RATIO", 200),
            encryption_key=env.get("PORTAL_ENCRYPTION_KEY") or None,
            auth=_env_switch(env, "PORTAL_AUTH", True),
            session_idle_seconds=_env_int(env, "PORTAL_SESSION_IDLE_MIN", 30) * 60,
            session_max_seconds=_env_int(env, "PORTAL_SESSION_MAX_HOURS", 12) * 3600,
            monitor=_env_switch(env, "PORTAL_MONITOR", True),
            log_retention_days=_env_int(env, "PORTAL_LOG_RETENTION_DAYS", 30),
            log_sample_rows=_env_int(env, "PORTAL_LOG_SAMPLE_ROWS", 16),
            log_sample_interval_seconds=_env_int(env, "PORTAL_LOG_SAMPLE_INTERVAL_MS", 100) / 1000,
        )
        return replace(settings, **overrides) if overrides else settings

    @property
    def resolved_db_url(self) -> str:
        """The database URL: ``PORTAL_DB_URL`` or the SQLite file in the home."""
        return self.db_url or f"sqlite:///{(self.home / 'portal.db').resolve()}"
