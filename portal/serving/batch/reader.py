"""Reading a CSV or Parquet file in chunks, and turning each chunk into feeds.

pyarrow parses the columns the model reads straight into float arrays (no
pandas per chunk); a value that is not what the input takes is refused with its
line (CSV) or row (Parquet) and its column.  Signatures the fast path does not
cover go through pandas and :func:`portal.serving.signature.coerce`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ...errors import InvalidInputError
from ...ingest.modelinfo import numpy_dtype
from ..signature import Feeds, coerce
from .columns import FLOAT_TYPES, ColumnPlan, InputColumns

if TYPE_CHECKING:
    from ...storage.registry import ModelVersion

__all__ = ["TableReader", "count_rows", "general_feeds", "parse_types", "table_feeds"]

# 1 MiB blocks: larger ones cost more CPU per row (measured: 16 MiB blocks parse 1M × 30 floats with
# twice the CPU of 1 MiB ones), and the chunk for onnxruntime is assembled from several blocks anyway.
_BLOCK_BYTES = 1 << 20
_FIRST_ROWS = 8_192
_MAX_LINE = re.compile(r"Row #(\d+): (.*)", re.S)
_NAN_WORDS = frozenset({"nan", "+nan", "-nan"})


def _where(csv: bool, row: int) -> str:
    """``line 700,001`` for the 0-based data row 699,999 of a CSV (its header is line 1); ``row N`` in Parquet."""
    return f"line {row + 2:,}" if csv else f"row {row + 1:,}"


def _unreadable(name: str, csv: bool, exc: BaseException, consumed: int | None = None) -> InvalidInputError:
    text = str(exc).strip()
    if "Empty CSV file" in text:
        return InvalidInputError(f"{name} is empty; a CSV needs a header row and at least one data row")
    first = text.split("\n")[0][:300]
    kind = "CSV" if csv else "Parquet"
    match = _MAX_LINE.search(first)
    if match:
        detail = match.group(2)
        if len(detail) > 120:
            detail = detail[:120] + " …"
        return InvalidInputError(f"{name} is not a readable {kind} file: line {int(match.group(1)):,}: "
                                 f"{detail[:1].lower()}{detail[1:]}")
    near = f" (after line {consumed + 1:,})" if consumed is not None and csv else ""
    return InvalidInputError(f"{name} is not a readable {kind} file{near}: {first}")


class TableReader:
    """A CSV or Parquet file read in tables of ``chunk_rows`` rows, with the model's columns typed."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.csv = path.suffix.lower() != ".parquet"
        self._parquet: pq.ParquetFile | None = None
        try:
            if self.csv:
                reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False))
                self.columns = [str(c) for c in reader.schema.names]
                reader.close()
            else:
                # buffered reads instead of pre-buffering whole row groups: memory then follows the
                # chunk, not the row group (1M rows × 30 floats: 237 MB peak instead of 349 MB)
                self._parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=_BLOCK_BYTES)
                self.columns = [str(c) for c in self._parquet.schema_arrow.names]
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise _unreadable(name, self.csv, exc) from exc

    def tables(self, plan: ColumnPlan, *, chunk_rows: int, keep_inputs: bool,
               types: dict[str, pa.DataType]) -> Iterator[pa.Table]:
        """Tables of exactly ``chunk_rows`` rows (the last one shorter)."""
        if not self.csv:
            assert self._parquet is not None
            columns = None if keep_inputs else list(plan.needed)
            try:
                for batch in self._parquet.iter_batches(batch_size=chunk_rows, columns=columns, use_threads=True):
                    yield pa.Table.from_batches([batch])
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise _unreadable(self.name, False, exc) from exc
            return
        if plan.inputs is not None:
            if keep_inputs:  # every column as read (text), the model's columns typed
                types = {**{c: pa.string() for c in self.columns}, **types}
            convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                           include_columns=None if keep_inputs else list(plan.needed))
        else:  # the general path infers types like pandas would, then coerce decides
            convert = pacsv.ConvertOptions(include_columns=None if keep_inputs else list(plan.needed))
        # use_threads=False: the reader is already a thread of its own, and a serial parse says which
        # line a malformed row is on (pyarrow only numbers rows when it parses them in order)
        options = pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False)
        consumed = 0
        pending: list[pa.RecordBatch] = []
        count = 0
        # a small first chunk: onnxruntime starts as soon as a few blocks are parsed, not a whole chunk
        size = min(chunk_rows, _FIRST_ROWS)
        try:
            reader = pacsv.open_csv(self.path, read_options=options, convert_options=convert)
            schema = reader.schema
            for batch in reader:
                consumed += batch.num_rows
                pending.append(batch)
                count += batch.num_rows
                while count >= size:
                    table = pa.Table.from_batches(pending, schema)
                    yield table.slice(0, size)
                    rest = table.slice(size)
                    pending, count = rest.to_batches(), rest.num_rows
                    size = chunk_rows
            if count:
                yield pa.Table.from_batches(pending, schema)
        except pa.ArrowInvalid as exc:
            if "conversion error" in str(exc) and plan.inputs is not None:
                raise self._diagnose(plan, consumed, exc) from None
            raise _unreadable(self.name, True, exc, consumed) from exc
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(self.name, True, exc, consumed) from exc

    def _diagnose(self, plan: ColumnPlan, consumed: int, exc: BaseException) -> InvalidInputError:
        """The first cell from row ``consumed`` on that is not a number: its line, column and value."""
        assert plan.inputs is not None
        numeric = [c for inp in plan.inputs if inp.dtype != "string" for c in inp.columns]
        options = pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False, skip_rows_after_names=consumed)
        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in numeric}, include_columns=numeric,
                                       strings_can_be_null=True)
        offset = consumed
        try:
            for batch in pacsv.open_csv(self.path, read_options=options, convert_options=convert):
                found = [(row, col) for col in numeric
                         if (row := _first_non_number(batch.column(col))) is not None]
                if found:
                    row, col = min(found, key=lambda item: (item[0], numeric.index(item[1])))
                    value = batch.column(col)[row].as_py()
                    return InvalidInputError(f"{_where(True, offset + row)}, column {col!r} expects numbers, "
                                             f"got {value!r}; fix or remove the non-numeric values")
                offset += batch.num_rows
        except (pa.ArrowException, OSError):
            pass
        return _unreadable(self.name, True, exc, consumed)


def _first_non_number(values: pa.Array) -> int | None:
    """The index of the first text cell that is not a number (pyarrow's float parser refused it)."""
    texts = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(texts, errors="coerce")
    candidates = np.flatnonzero(numbers.isna().to_numpy() & texts.notna().to_numpy())
    for index in candidates:
        if str(texts.iloc[index]).strip().lower() not in _NAN_WORDS:
            return int(index)
    return None


def parse_types(plan: ColumnPlan, keep_inputs: bool) -> dict[str, pa.DataType]:
    """The type pyarrow parses each model column as (floats for integers too: ``1.0`` is a valid 1)."""
    types: dict[str, pa.DataType] = {}
    for inp in plan.inputs or ():
        if inp.dtype == "string":
            kind = pa.string()
        elif inp.dtype in FLOAT_TYPES and not keep_inputs:
            kind = FLOAT_TYPES[inp.dtype]
        else:  # integers, and floats shown back in the output: float64 keeps what the file said
            kind = pa.float64()
        types.update(dict.fromkeys(inp.columns, kind))
    return types


# -- converting a table to feeds ----------------------------------------------------------------------
def _first_true(mask: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first True cell of a 2-D mask, row-major."""
    row = int(np.flatnonzero(mask.any(axis=1))[0])
    return row, int(np.flatnonzero(mask[row])[0])


def _check_values(arr: np.ndarray, columns: Sequence[str], dtype: str, where: Callable[[int], str]) -> np.ndarray:
    """``arr`` (rows × columns) cast to ``dtype`` with the checks of ``signature.cast``, naming line and column."""
    want = numpy_dtype(dtype)
    if arr.dtype.kind == "f" and not math.isfinite(float(arr.sum(dtype=np.float64))):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = _first_true(bad)
            kind = "NaN (a missing value)" if np.isnan(arr[row, col]) else "an infinite value"
            raise InvalidInputError(f"{where(row)}, column {columns[col]!r} has {kind}; fill or drop that row")
    if want.kind == "f":
        out = arr.astype(want, copy=False)
        if out.dtype != arr.dtype and not math.isfinite(float(out.sum(dtype=np.float64))):
            row, col = _first_true(~np.isfinite(out))
            raise InvalidInputError(f"{where(row)}, column {columns[col]!r} has {arr[row, col]!r}, too large for "
                                    f"{dtype}")
        return out
    if arr.dtype.kind == "f":
        fractional = arr != np.round(arr)
        if fractional.any():
            row, col = _first_true(fractional)
            raise InvalidInputError(f"{where(row)}, column {columns[col]!r} expects integers ({dtype}), got "
                                    f"{arr[row, col].item()!r}; round them yourself if that is what you mean")
    info = np.iinfo(want)
    outside = (arr < info.min) | (arr > info.max)
    if outside.any():
        row, col = _first_true(outside)
        raise InvalidInputError(f"{where(row)}, column {columns[col]!r} has {arr[row, col].item()!r}, outside the "
                                f"{dtype} range [{info.min}, {info.max}]")
    return arr.astype(want)


def _column_numbers(column: pa.ChunkedArray, name: str, where: Callable[[int], str]) -> np.ndarray:
    """One column as numbers: text that is not a number is refused by line (Parquet text columns)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        bad = _first_non_number(column.combine_chunks())
        if bad is not None:
            raise InvalidInputError(f"{where(bad)}, column {name!r} expects numbers, got {column[bad].as_py()!r}; "
                                    "fix or remove the non-numeric values")
        return pd.to_numeric(pd.Series(column.to_numpy(zero_copy_only=False), dtype=object),
                             errors="coerce").to_numpy(dtype=np.float64)
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        return column.to_numpy(zero_copy_only=False)
    from ..signature import cast  # dates, decimals, nested: the general rules and messages

    return cast(column.to_numpy(zero_copy_only=False), "float64", f"column {name!r}")


def _first_null(column: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])


def _matrix(table: pa.Table, inp: InputColumns, where: Callable[[int], str]) -> np.ndarray:
    rows = table.num_rows
    for name in inp.columns:
        column = table.column(name)
        if column.null_count:
            raise InvalidInputError(f"{where(_first_null(column))}, column {name!r} has NaN (a missing value); "
                                    "fill or drop that row")
    types = {table.schema.field(c).type for c in inp.columns}
    if len(types) == 1 and pa.types.is_floating(next(iter(types))):
        # one C++ call builds the row-major block onnxruntime wants
        arr = np.asarray(table.select(list(inp.columns)).to_tensor(row_major=True))
    else:
        arr = np.empty((rows, len(inp.columns)), np.float64)
        for j, name in enumerate(inp.columns):
            arr[:, j] = _column_numbers(table.column(name), name, where)
    return _check_values(arr, inp.columns, inp.dtype, where)


def table_feeds(plan: ColumnPlan, table: pa.Table, start: int, csv: bool) -> Feeds:
    def where(row: int) -> str:
        return _where(csv, start + row)

    rows = table.num_rows
    arrays: dict[str, np.ndarray] = {}
    assert plan.inputs is not None
    for inp in plan.inputs:
        if inp.dtype == "string":
            column = table.column(inp.columns[0])
            if column.null_count:
                raise InvalidInputError(f"{where(_first_null(column))}, column {inp.columns[0]!r} has a missing "
                                        "value; give every row a text value")
            values = column.to_numpy(zero_copy_only=False)
            arr = values if values.dtype == object else values.astype(str).astype(object)
        else:
            arr = _matrix(table, inp, where)
        arrays[inp.name] = arr.reshape((rows, *inp.shape))
    return Feeds(arrays, rows, plan.unused)


def general_feeds(version: ModelVersion, table: pa.Table, start: int, csv: bool, extra_columns: str,
                  renames: Mapping[str, str] | None = None) -> Feeds:
    """Feeds through pandas and ``coerce`` (signatures the fast path does not cover).

    ``renames`` (file column → model column) are the plan's matches, applied first.
    """
    try:
        frame = table.to_pandas()
        if renames:
            frame = frame.rename(columns=dict(renames))
        return coerce(version.signature, frame, feature_names=version.feature_names, extra_columns=extra_columns)
    except InvalidInputError as exc:
        span = f"lines {start + 2:,}–{start + table.num_rows + 1:,}" if csv else \
            f"rows {start + 1:,}–{start + table.num_rows:,}"
        raise InvalidInputError(f"{span}: {exc.message}") from None


def count_rows(path: str | Path) -> int:
    """Data rows of a CSV (its lines after the header, read 1 MiB at a time) or Parquet file (its metadata)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (pa.ArrowException, OSError):
            return 0
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(0, lines - 1)
