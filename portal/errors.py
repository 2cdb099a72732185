"""Errors raised by Model Portal.

Every error a user can cause is a ``PortalError`` carrying the HTTP status the
REST API answers with and a message that says what was wrong and how to fix it.
The tree (class, its status; below a class are its subclasses):

    PortalError (500)
    ├── CorruptBlobError (500)             a stored file no longer matches its sha256
    ├── InvalidInputError (400)            bad prediction input, bad argument (also a ValueError)
    │   ├── InvalidNameError (400)         model name / alias / reference malformed
    │   └── InvalidModelError (422)        upload refused: not a model, broken, unsafe
    │       ├── UnsupportedFormatError (415)   format not accepted (pickle, random bytes)
    │       ├── InputShapeRequiredError (422)  PyTorch model needs --input-shape
    │       └── SandboxError (422)             the sandboxed child ran out of memory/time
    ├── AuthenticationError (401)          no token, a bad one, a wrong password
    │   └── TooManyAttemptsError (429)     sign-in locked out for a while (REST: Retry-After)
    ├── PermissionDeniedError (403)        the role or ownership does not allow it (also a PermissionError)
    ├── NotFoundError (404)                model, version, alias or blob missing (also a LookupError)
    ├── ConflictError (409)                name taken, alias in use, dependents exist
    ├── PayloadTooLargeError (413)
    ├── MemoryLimitError (422)             a prediction needed more than PORTAL_PREDICT_MEMORY_MB
    ├── BusyError (503)                    too many requests in flight (REST: Retry-After)
    └── InferenceTimeoutError (504)        an inference ran past its limit (also a TimeoutError)
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
    "MemoryLimitError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PortalError",
    "SandboxError",
    "TooManyAttemptsError",
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


class SandboxError(InvalidModelError):
    """The sandboxed child process failed: out of memory, CPU time or wall-clock time."""


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


class MemoryLimitError(PortalError):
    """A prediction needed more memory than ``PORTAL_PREDICT_MEMORY_MB``; it was stopped before taking it.

    422, not 500 or 503: the input (or a model that sizes tensors from its
    input) asks for more than the portal gives predictions, nothing is wrong
    with the server, and the same request alone fails the same way.  The limit
    is shared by the predictions one process runs at a time, so under load a
    request near the limit can also be refused because of the others.
    """

    status = 422

    @classmethod
    def for_limit(
        cls, limit_bytes: int, *, asked_bytes: int | None = None, free_bytes: int | None = None
    ) -> MemoryLimitError:
        """The error for a run refused by a ceiling of ``limit_bytes``, with onnxruntime's figures when known."""
        mib = 1024 * 1024
        asked = ""
        if asked_bytes is not None and free_bytes is not None:
            asked = f": it asked for {asked_bytes / mib:,.0f} MiB more with {free_bytes / mib:,.0f} MiB free"
        return cls(
            f"the model needed more than the prediction memory limit of {limit_bytes / mib:,.0f} MiB "
            f"(PORTAL_PREDICT_MEMORY_MB){asked}; send fewer rows per request, or ask an admin to raise "
            "the limit (predictions running at the same time share it)"
        )


class BusyError(PortalError):
    """Too many requests are running; retry later."""

    status = 503


class InferenceTimeoutError(PortalError, TimeoutError):
    """An inference ran past its time limit and was stopped."""

    status = 504
