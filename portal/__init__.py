"""Model Portal: register, serve, compress and explain ONNX models.

    >>> from portal import Portal
    >>> p = Portal.open()                       # $PORTAL_HOME or ./model_cache
    >>> v = p.register("model.onnx", name="churn", description="...")
    >>> p.predict("churn@production", frame).to_frame()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    InferenceTimeoutError,
    InputShapeRequiredError,
    InvalidInputError,
    InvalidModelError,
    InvalidNameError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PortalError,
    SandboxError,
    UnsupportedFormatError,
)
from .storage.refs import ModelRef

if TYPE_CHECKING:
    from .core import Portal, StagedModel
    from .serving.predict import Prediction
    from .storage.registry import AuditEvent, ModelSummary, ModelVersion

# Heavy modules (SQLAlchemy, pandas, onnxruntime) load on first use, so the sandboxed
# ingest child, which imports portal.errors and portal.config, does not pay for them.
_LAZY = {
    "Portal": ".core", "StagedModel": ".core", "Prediction": ".serving.predict",
    "AuditEvent": ".storage.registry", "ModelSummary": ".storage.registry", "ModelVersion": ".storage.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'portal' has no attribute {name!r}")


__all__ = [
    "AuditEvent",
    "AuthenticationError",
    "BusyError",
    "ConflictError",
    "InferenceTimeoutError",
    "InputShapeRequiredError",
    "InvalidInputError",
    "InvalidModelError",
    "InvalidNameError",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Portal",
    "PortalError",
    "Prediction",
    "SandboxError",
    "Settings",
    "StagedModel",
    "UnsupportedFormatError",
]
