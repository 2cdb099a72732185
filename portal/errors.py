"""Errors raised by Model Portal.

Every error a user can cause is a ``PortalError`` carrying the HTTP status the
REST API answers with and a message that says what was wrong and how to fix it.

    PortalError (500)
    ├── CorruptBlobError (500)             a stored file no longer matches its sha256
    ├── InvalidInputError (400)            bad prediction input, bad argument
    │   ├── InvalidNameError (400)         model name / alias / reference malformed
    │   └── InvalidModelError (422)        upload refused: not a model, broken, unsafe
    │       ├── UnsupportedFormatError (415)   format not accepted (pickle, random bytes)
    │       └── InputShapeRequiredError (422)  PyTorch model needs --input-shape
    ├── AuthenticationError (401)
    ├── PermissionDeniedError (403)
    ├── NotFoundError (404)                model, version, alias or blob missing
    ├── ConflictError (409)                name taken, alias in use, dependents exist
    ├── PayloadTooLargeError (413)
    ├── SandboxError (422)                 the sandboxed child ran out of memory/time
    ├── BusyError (503)
    └── InferenceTimeoutError (504)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BusyError",
    "ConflictError",
    "CorruptBlobError",
    "InferenceTimeoutError",
    "InputShapeRequiredError",
    "InvalidInputError",
    "InvalidModelError",
    "InvalidNameError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PortalError",
    "TooManyAttemptsError",
    "SandboxError",
    "UnsupportedFormatError",
]


class PortalError(Exception):
    """Base class of every error Model Portal raises on purpose."""

    status: int = 500

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class CorruptBlobError(PortalError):
    """A stored blob no longer hashes to its name: it changed on disk and is never served.

    500, not 503: retrying cannot help (an admin must restore the file), and the
    REST API logs every 500 so the admin sees it.
    """

    status = 500

    @classmethod
    def for_blob(cls, sha256: str, *, label: str | None = None) -> CorruptBlobError:
        """The error for blob ``sha256``, named ``label`` (``name:version``) when known."""
        what = f"model file for {label}" if label else f"stored file {sha256[:12]}"
        return cls(
            f"{what} is corrupt (sha256 mismatch); an admin should run `portal fsck --verify` "
            "and restore it from a backup"
        )


class InvalidInputError(PortalError, ValueError):
    """Input data or an argument was not acceptable."""

    status = 400


class InvalidNameError(InvalidInputError):
    """A model name, alias or reference was malformed."""


class InvalidModelError(InvalidInputError):
    """An uploaded file was refused as a model."""

    status = 422


class UnsupportedFormatError(InvalidModelError):
    """The uploaded file is of a format the portal does not accept."""

    status = 415


class InputShapeRequiredError(InvalidModelError):
    """A PyTorch model whose input shape cannot be inferred needs one from the caller."""


class AuthenticationError(PortalError):
    """No valid credentials were given."""

    status = 401


class TooManyAttemptsError(AuthenticationError):
    """Too many failed sign-ins for one name: wait ``retry_after`` seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDeniedError(PortalError, PermissionError):
    """The caller's role does not allow this action."""

    status = 403


class NotFoundError(PortalError, LookupError):
    """A model, version, alias or blob does not exist."""

    status = 404


class ConflictError(PortalError):
    """The action conflicts with the current state (alias in use, dependents exist)."""

    status = 409


class PayloadTooLargeError(PortalError):
    """An upload or request body is over the configured limit."""

    status = 413


class SandboxError(InvalidModelError):
    """The sandboxed child process failed: out of memory, CPU time or wall-clock time."""


class BusyError(PortalError):
    """Too many requests are running; retry later."""

    status = 503


class InferenceTimeoutError(PortalError, TimeoutError):
    """An inference ran past its time limit and was stopped."""

    status = 504
