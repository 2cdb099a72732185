"""Optional encryption at rest of blobs with AES-GCM (``cryptography``).

With ``PORTAL_ENCRYPTION_KEY`` set (32 random bytes, base64), every new blob is
written as ``MAGIC | nonce (12 bytes) | ciphertext+tag`` and decrypted only into
memory when read.  The blob keeps its name: the sha256 of the *plaintext*, so
deduplication and references are unchanged.  A tampered blob fails the GCM tag
check and is refused.  Generate a key with ``portal keygen``.
"""

from __future__ import annotations

import base64
import binascii
import os

from ..errors import PortalError

__all__ = ["MAGIC", "BlobCipher", "IntegrityError", "generate_key"]

MAGIC = b"PORTALENC1\n"
_NONCE = 12


class IntegrityError(PortalError):
    """A blob failed its integrity check (tampered or truncated)."""

    status = 500


def generate_key() -> str:
    """A new random key, base64-encoded, for ``PORTAL_ENCRYPTION_KEY``."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class BlobCipher:
    """AES-256-GCM with a random nonce per blob; the blob's hash is the associated data."""

    def __init__(self, key: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            raw = base64.urlsafe_b64decode(key.strip() + "=" * (-len(key.strip()) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise PortalError(
                "PORTAL_ENCRYPTION_KEY must be 32 random bytes in base64 (generate one with `portal keygen`)"
            )
        self._aead = AESGCM(raw)

    def encrypt(self, plaintext: bytes, sha256: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, sha256.encode())

    def decrypt(self, data: bytes, sha256: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        body = data[len(MAGIC):]
        try:
            return self._aead.decrypt(body[:_NONCE], body[_NONCE:], sha256.encode())
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                f"blob {sha256[:12]} failed its integrity check: it was tampered with, truncated, "
                "or encrypted with another key; restore it from a backup"
            ) from exc
