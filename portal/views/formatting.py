"""Text the pages show: byte sizes, tensor shapes, a description's summary line, nested markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "demote_headings", "describe_shape", "format_bytes", "format_parameters", "split_conversion_notes", "summary_line",
]

# ingest's messages that only say how the file was converted (no risk to act on)
_NOTE_STARTS = ("converted from",)
_NOTE_CAVEATS = ("could not", "only accepts", "failed", "not be")


def format_bytes(size: int | float) -> str:
    """``1536`` → ``"1.5 KB"`` (powers of 1024, one decimal above bytes)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - loop always returns


def format_parameters(info: dict[str, Any]) -> str:
    """The parameter count of a version's ``info`` as every page shows it: ``"1,234"``, or ``"—"`` when none.

    Converters that keep coefficients in node attributes (trees, linear models from
    skl2onnx) store no weight tensors, so 0 means "not counted", not "no parameters".
    """
    count = int(info.get("parameters") or 0)
    return f"{count:,}" if count else "—"


def split_conversion_notes(messages: Sequence[str]) -> tuple[list[str], list[str]]:
    """Ingest's messages split into notes (how the file was converted) and warnings (something to act on)."""
    notes, warnings = [], []
    for message in messages:
        text = str(message)
        lowered = text.lower()
        is_note = lowered.startswith(_NOTE_STARTS) and not any(c in lowered for c in _NOTE_CAVEATS)
        (notes if is_note else warnings).append(text)
    return notes, warnings


def describe_shape(shape: Sequence[Any] | None) -> str:
    """``["batch", 30]`` → ``"[batch, 30]"``; unknown dims shown as ``?``."""
    if shape is None:
        return "any"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def summary_line(description: str, *, width: int = 120) -> str:
    """The first prose line of a markdown description (headings stripped)."""
    for line in description.splitlines():
        text = line.strip().lstrip("#").strip().strip("*_`")
        if text and not text.startswith("|"):
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""


def demote_headings(markdown: str, *, levels: int = 2) -> str:
    """Push markdown headings ``levels`` down (``# Title`` → ``### Title``) to nest a card in a page."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)
