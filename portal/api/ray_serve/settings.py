"""How the Ray Serve application runs: :class:`RaySettings`, read from ``PORTAL_RAY_*`` and CLI options."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from ...config import read

__all__ = ["RaySettings"]


@dataclass(frozen=True)
class RaySettings:
    """How the Ray Serve application runs: replicas, autoscaling and the local Ray.

    ``replicas`` is a fixed count; setting ``min_replicas`` / ``max_replicas`` /
    ``target_ongoing_requests`` turns Serve's autoscaler on instead (min defaults
    to 1, max to ``replicas``, target to Serve's default of 2 requests per replica).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    models_per_replica: int = 4
    max_ongoing_requests: int = 32
    ingress_replicas: int = 1
    address: str = "local"
    num_cpus: int | None = None
    object_store_mb: int = 200

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> RaySettings:
        """Read ``PORTAL_RAY_*`` variables (see :mod:`portal.config.variables`); overrides that are not None win."""
        env = dict(os.environ if env is None else env)
        settings = cls(
            replicas=read(env, "PORTAL_RAY_REPLICAS"),
            min_replicas=read(env, "PORTAL_RAY_MIN_REPLICAS"),
            max_replicas=read(env, "PORTAL_RAY_MAX_REPLICAS"),
            target_ongoing_requests=read(env, "PORTAL_RAY_TARGET_ONGOING_REQUESTS"),
            models_per_replica=read(env, "PORTAL_RAY_MODELS_PER_REPLICA"),
            max_ongoing_requests=read(env, "PORTAL_RAY_MAX_ONGOING_REQUESTS"),
            ingress_replicas=read(env, "PORTAL_RAY_INGRESS_REPLICAS"),
            address=read(env, "PORTAL_RAY_ADDRESS"),
            num_cpus=read(env, "PORTAL_RAY_NUM_CPUS"),
            object_store_mb=read(env, "PORTAL_RAY_OBJECT_STORE_MB"),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    @property
    def autoscaling(self) -> bool:
        """Whether Serve's autoscaler sizes the model servers (any of min, max or target is set)."""
        return any(v is not None for v in (self.min_replicas, self.max_replicas, self.target_ongoing_requests))

    def check(self) -> None:
        """Raise ValueError, naming the option, for settings Serve would refuse later."""
        for name in ("replicas", "models_per_replica", "max_ongoing_requests", "ingress_replicas", "port"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1 (not {getattr(self, name)})")
        if self.autoscaling:
            low, high = self.min_replicas or 1, self.max_replicas or max(self.replicas, self.min_replicas or 1)
            if low > high:
                raise ValueError(f"min-replicas ({low}) is more than max-replicas ({high})")

    def server_options(self) -> dict[str, Any]:
        """``ModelServer`` deployment options: a replica count or an autoscaling config."""
        options: dict[str, Any] = {"max_ongoing_requests": self.max_ongoing_requests,
                                   "ray_actor_options": {"num_cpus": self._replica_cpus()}}
        if self.autoscaling:
            low = self.min_replicas or 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": self.max_replicas or max(self.replicas, low),
                "target_ongoing_requests": self.target_ongoing_requests or 2.0,
            }
        else:
            options["num_replicas"] = self.replicas
        return options

    def _replica_cpus(self) -> float:
        # Ray's CPUs are a scheduling budget: a replica asks for its share, so that
        # every replica (and a replacement for a dead one) fits on this machine.
        most = max(self.replicas, self.max_replicas or 0, self.min_replicas or 0)
        return min(1.0, self.cpus() / most)

    def cpus(self) -> int:
        """CPUs of the local Ray: ``num_cpus``, or every core of this machine."""
        return self.num_cpus or os.cpu_count() or 1
