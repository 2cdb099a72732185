"""Receive a multipart upload straight into a file on the store's filesystem.

Starlette's form parser spools files in the system temp directory; this one
writes the single file part where the portal stages uploads (``PORTAL_HOME/tmp``),
chunk by chunk as it arrives, so a 2 GiB model never sits in memory.  The body
limit itself is enforced by :class:`portal.api.guard.Guard` while the body streams.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ...errors import InvalidInputError, PayloadTooLargeError

__all__ = ["Upload", "receive_upload"]

_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 32


@dataclass
class Upload:
    """The form fields and the one file of a multipart upload."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


class _Receiver:
    def __init__(self, dest: Path, charset: str, max_file_bytes: int) -> None:
        self.dest = dest
        self.charset = charset
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self.out: BinaryIO | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field: str | None = None
        self._data = bytearray()
        self._in_file = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            raise InvalidInputError("a form field is not valid text in the declared charset") from None

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._field = None
        self._data = bytearray()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > _MAX_FIELD_BYTES:
            raise InvalidInputError("a multipart header is too long")

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidInputError('each form part needs a Content-Disposition with a "name"')
        self._field = self._decode(options[b"name"])
        if b"filename" in options:
            if self.out is not None:
                raise InvalidInputError("send exactly one file per upload")
            self.upload.filename = Path(self._decode(options[b"filename"]).replace("\\", "/")).name or "upload"
            self.out = open(self.dest, "wb")
            self._in_file = True
        elif len(self.upload.fields) >= _MAX_FIELDS:
            raise InvalidInputError(f"too many form fields (at most {_MAX_FIELDS})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            assert self.out is not None
            self.upload.size += len(chunk)
            if self.upload.size > self.max_file_bytes:
                raise PayloadTooLargeError(
                    f"upload is larger than the limit of {self.max_file_bytes / 1024**2:.0f} MiB; "
                    "raise PORTAL_MAX_UPLOAD_MB to accept larger files"
                )
            self.out.write(chunk)
            return
        self._data.extend(chunk)
        if len(self._data) > _MAX_FIELD_BYTES:
            raise InvalidInputError(f"form field {self._field!r} is longer than {_MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
        elif self._field is not None:
            self.upload.fields[self._field] = self._decode(bytes(self._data))

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def receive_upload(
    content_type: str, stream: AsyncIterator[bytes], dest: Path, *, max_file_bytes: int
) -> Upload:
    """Parse a ``multipart/form-data`` body; its file part is written to ``dest``.

    Raises:
        InvalidInputError: not multipart, no boundary, malformed, no file part.
        PayloadTooLargeError: the file part is over ``max_file_bytes``.
    """
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise InvalidInputError("upload with Content-Type multipart/form-data (a 'file' part plus fields)")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInputError("the multipart Content-Type has no boundary")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    receiver = _Receiver(dest, charset, max_file_bytes)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInputError(f"malformed multipart body: {str(exc)[:200]}") from None
    finally:
        receiver.close()
    if receiver.upload.filename is None:
        raise InvalidInputError("the upload has no file part; send the model as a form file field")
    return receiver.upload
