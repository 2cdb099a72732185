"""Model Portal: register, serve, compress and explain ONNX models.

    >>> from portal import Portal
    >>> p = Portal.open()                       # $PORTAL_HOME or ./model_cache
    >>> v = p.register("model.onnx", name="churn", description="...")
    >>> p.predict("churn@production", frame).to_frame()
"""

from __future__ import annotations

from .config import Settings
from .core import Portal, StagedModel
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
from .predict import Prediction
from .refs import ModelRef
from .registry import AuditEvent, ModelSummary, ModelVersion

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
]
