"""Read prediction inputs from files and write results safely.

Readers never unpickle (``np.load(allow_pickle=False)``); CSV downloads escape
cells that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError

__all__ = [
    "INPUT_SUFFIXES",
    "csv_header",
    "escape_formula_cells",
    "escape_formulas",
    "frame_to_csv_bytes",
    "peek_table",
    "read_input",
    "read_table",
    "unescape_formulas",
    "write_csv_rows",
    "write_frame",
]

INPUT_SUFFIXES = (".csv", ".parquet", ".json", ".npz", ".npy")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|")


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def _table_error(exc: BaseException, name: str) -> InvalidInputError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return InvalidInputError(f"{Path(name).name} is empty; a CSV needs a header row and at least one data row")
    kind = "Parquet" if _suffix(name) == ".parquet" else "CSV"
    first = str(exc).strip().split("\n")[0][:300]
    return InvalidInputError(f"{Path(name).name} is not a readable {kind} file: {first}")


_TABLE_ERRORS = (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError)


def read_table(source: str | Path | bytes, *, name: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet table into a DataFrame, with readable errors."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "data.csv")
    buffer = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        if _suffix(name) == ".parquet":
            return pd.read_parquet(buffer)
        return pd.read_csv(buffer)
    except _TABLE_ERRORS as exc:
        raise _table_error(exc, name) from exc


def peek_table(data: bytes, *, name: str, rows: int = 20) -> tuple[pd.DataFrame, int]:
    """The first ``rows`` rows of a CSV or Parquet file's bytes, and how many data rows it has.

    Reads no more than the head (a CSV's rows are counted as its lines after the
    header), so a large upload is never parsed whole just to show a preview.
    """
    try:
        if _suffix(name) == ".parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(io.BytesIO(data))
            head = next(table.iter_batches(batch_size=rows), None)
            frame = head.to_pandas() if head is not None else table.schema_arrow.empty_table().to_pandas()
            return frame, int(table.metadata.num_rows)
        frame = pd.read_csv(io.BytesIO(data), nrows=rows)
    except _TABLE_ERRORS as exc:
        raise _table_error(exc, name) from exc
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return frame, max(len(frame), lines - 1)


def _read_json(raw: bytes, name: str) -> Any:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInputError(f"{name} is not valid JSON: {exc}") from exc
    if isinstance(doc, dict) and "inputs" in doc:
        doc = doc["inputs"]
    if isinstance(doc, list):
        if not doc:
            raise InvalidInputError(f"{name} holds an empty list; give at least one record")
        if all(isinstance(r, dict) for r in doc):
            return pd.DataFrame.from_records(doc)
        try:
            return np.asarray(doc)
        except ValueError:
            raise InvalidInputError(f"{name}: nested lists must all have the same length (one row per sample)") from None
    if isinstance(doc, dict):
        return doc
    raise InvalidInputError(f"{name}: expected a list of records or an object of arrays, got {type(doc).__name__}")


def _read_numpy(raw: bytes, name: str, suffix: str) -> Any:
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise InvalidInputError(f"{name} holds Python objects, which are never unpickled; save plain arrays") from exc
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"{name} is not a valid {suffix} file: {exc}") from exc
    if suffix == ".npz":
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    return loaded


def read_input(source: str | Path | bytes, *, name: str | None = None) -> Any:
    """Read one prediction input file (.csv, .parquet, .json, .npz, .npy)."""
    name = name or (Path(source).name if isinstance(source, (str, Path)) else "input")
    suffix = _suffix(name)
    if suffix in (".csv", ".parquet", ".tsv", ".txt"):
        return read_table(source, name=name)
    raw = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if suffix == ".json":
        return _read_json(raw, name)
    if suffix in (".npz", ".npy"):
        return _read_numpy(raw, name, suffix)
    raise InvalidInputError(
        f"cannot read {name!r}: expected one of {', '.join(INPUT_SUFFIXES)} or an image (.png, .jpg, ...)"
    )


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that spreadsheets would evaluate (``=``, ``+``, ``-``, ``@``) with a quote."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind in "OUS" or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    renamed = {c: "'" + c for c in out.columns if isinstance(c, str) and c.startswith(_FORMULA_START)}
    return out.rename(columns=renamed)


def unescape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`escape_formulas` for display: a quote before a formula start is dropped again."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind in "OUS" or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(lambda v: v[1:] if isinstance(v, str) and v[:1] == "'" and
                                    v[1:2] != "" and v[1:].startswith(_FORMULA_START) else v)
    return out.rename(columns={c: c[1:] for c in out.columns
                               if isinstance(c, str) and c[:1] == "'" and c[1:].startswith(_FORMULA_START)})


_FORMULA_CELL = r"^[=+\-@\t\r|]"
# a plain number (what a spreadsheet reads as a value, never a formula), as text read from a file
_NUMBER_CELL = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_NEEDS_QUOTES = r'[,"\r\n]'


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def csv_header(names: Sequence[str]) -> bytes:
    """The header line of a results CSV: names that start like a formula get a quote, as cells do."""
    escaped = ["'" + n if n.startswith(_FORMULA_START) else n for n in names]
    return (",".join(_quoted(n) for n in escaped) + "\n").encode()


def escape_formula_cells(values: Any, *, numbers_are_safe: bool = False) -> Any:
    """A pyarrow string array with cells that spreadsheets would evaluate prefixed by a quote.

    The same rule as :func:`escape_formulas`, vectorized; with ``numbers_are_safe``
    a cell that is a plain number (``-2.5``, text read from an input file) is left alone.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pc.fill_null(pc.match_substring_regex(values, _FORMULA_CELL), False)
    if numbers_are_safe:
        mask = pc.and_(mask, pc.invert(pc.fill_null(pc.match_substring_regex(values, _NUMBER_CELL), False)))
    if not pc.any(mask).as_py():
        return values
    quote, nothing = pa.scalar("'", type=values.type), pa.scalar("", type=values.type)
    return pc.if_else(mask, pc.binary_join_element_wise(quote, values, nothing), values)


def write_csv_rows(table: Any, stream: Any) -> None:
    """Append ``table``'s rows (no header) to a pyarrow output stream.

    Text is quoted only in chunks where some cell needs it (a comma, quote or
    line break), so ordinary results read like pandas' ``to_csv``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    quote = any(
        pc.any(pc.match_substring_regex(column, _NEEDS_QUOTES)).as_py()
        for column in table.columns
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if quote else "none")
    pacsv.write_csv(table, stream, options)


def frame_to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV bytes for a download, formulas escaped."""
    return escape_formulas(frame).to_csv(index=False).encode()


def write_frame(frame: pd.DataFrame, path: Path, *, outputs: dict[str, np.ndarray] | None = None) -> None:
    """Write results by suffix: .csv (formulas escaped), .json, .parquet, .npz (raw outputs)."""
    suffix = _suffix(path.name)
    if suffix == ".csv":
        path.write_bytes(frame_to_csv_bytes(frame))
    elif suffix == ".json":
        path.write_text(frame.to_json(orient="records", double_precision=10))
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".npz":
        arrays = outputs if outputs is not None else {c: frame[c].to_numpy() for c in frame.columns}
        np.savez(path, **{k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()})
    else:
        raise InvalidInputError(f"cannot write {path.name!r}: use a .csv, .json, .parquet or .npz output file")
