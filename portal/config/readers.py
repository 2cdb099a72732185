"""Typed readers of environment values: each turns one raw string into a value or says what is wrong.

A reader takes the variable's name and its value as set (never blank: a blank
value means "unset" and gets the default, see :func:`portal.config.variables.read`)
and raises :class:`ValueError` with a one-line message naming the variable.
"""

from __future__ import annotations

import math
import re

__all__ = ["count", "integer", "names", "non_negative", "port", "positive", "switch", "text"]

_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")


def integer(name: str, raw: str) -> int:
    """Any whole number, as Python's ``int`` reads it."""
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer (not {raw!r})") from None


def count(name: str, raw: str) -> int:
    """A whole number of at least 1, in ASCII digits."""
    raw = raw.strip()
    # not str.isdigit(): it accepts "²", which int() refuses
    if not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1 (not {raw!r})")
    return int(raw)


def _number(name: str, raw: str, *, allow_zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number (not {raw!r})") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (not {raw!r})")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be positive (not {raw!r})")
    return value


def positive(name: str, raw: str) -> float:
    """A finite number above 0."""
    return _number(name, raw, allow_zero=False)


def non_negative(name: str, raw: str) -> float:
    """A finite number, 0 or above."""
    return _number(name, raw, allow_zero=True)


def port(name: str, raw: str) -> int:
    """A TCP port from 1 to 65535, or 0 for none."""
    value = _number(name, raw, allow_zero=True)
    if value != int(value) or value > 65_535:
        raise ValueError(f"{name} must be a port number from 1 to 65535, or 0 for none (not {raw!r})")
    return int(value)


def switch(name: str, raw: str) -> bool:
    """``on`` / ``off`` (also 1 / 0, true / false, yes / no), in any case."""
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{name} must be on or off (not {value!r})")


def text(name: str, raw: str) -> str:
    """The value without surrounding whitespace."""
    return raw.strip()


def names(name: str, raw: str) -> frozenset[str]:
    """A comma-separated list of names; empty items are skipped."""
    return frozenset(n.strip() for n in raw.split(",") if n.strip())
