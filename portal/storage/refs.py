"""Model references (``name``, ``name:3``, ``name@alias``) and name rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidNameError

__all__ = ["ModelRef", "check_alias", "check_name", "is_version_number"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# not str.isdigit(): it accepts "²" and "٣", which int() refuses or reads as another number
_VERSION = re.compile(r"[0-9]{1,10}")
_MAX_VERSION = 2**31  # the registry's version column is a 32-bit integer on PostgreSQL
_NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


def _printable(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise InvalidNameError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"invalid model name {_printable(str(name))!r}: use {_NAME_RULE}")
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias, else raise InvalidNameError."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias == "latest":
        raise InvalidNameError(
            f"invalid alias {_printable(str(alias))!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter ('latest' is reserved)"
        )
    return alias


def is_version_number(text: str) -> bool:
    """Whether ``text`` is written like a version number: ASCII digits 0-9 only."""
    return _VERSION.fullmatch(text) is not None


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: a model name plus at most one of version or alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        """Parse ``name``, ``name:3``, ``name@alias`` (``name@latest`` is ``name``)."""
        if isinstance(text, ModelRef):
            return text
        if not isinstance(text, str) or not text:
            raise InvalidNameError("empty model reference: use name, name:3 or name@alias")
        if "@" in text:
            name, _, alias = text.partition("@")
            check_name(name)
            if alias == "latest":
                return cls(name)
            return cls(name, alias=check_alias(alias))
        if ":" in text:
            name, _, number = text.partition(":")
            check_name(name)
            if not is_version_number(number) or not 1 <= int(number) < _MAX_VERSION:
                raise InvalidNameError(
                    f"invalid version {_printable(number)!r} in {_printable(text)!r}: "
                    "versions are positive integers written with the digits 0-9, e.g. name:3"
                )
            return cls(name, version=int(number))
        return cls(check_name(text))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name
