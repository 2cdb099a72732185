"""Streamed batch scoring of a CSV or Parquet file: parse, infer and write in three overlapping stages.

::

    reader thread  ──(≤ 2 chunks)──▶  calling thread + one  ──(≤ 2 chunks)──▶  writer thread
    pyarrow parses the columns the     helper per other core:                the tidy result columns,
    model reads straight into float    onnxruntime on parts of               formula escaping, CSV or
    arrays (no pandas per chunk)       chunk_rows rows                       Parquet into a temp file

pyarrow and onnxruntime release the GIL, so the stages overlap and keep every
core busy (onnxruntime runs one single-threaded call per core, so no spinning
thread pool fights the parser for a core), and the bounded queues keep at most
a handful of chunks alive: memory grows with ``chunk_rows``, never with the file.  The output is written to a temp file
in the output's folder, fsynced and renamed into place only once every row has
been scored; an error (reported with its line and column), a cancel or a crash
leaves nothing under the output name.

Models whose inputs are numeric or text columns (one table input named by the
feature names or by position, pixel columns of a fixed-size input, or one
input per column) take the fast path above; any other signature goes through
pandas and :func:`portal.serving.signature.coerce` chunk by chunk, through the same
three stages.
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import os
import queue
import re
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .dataio import csv_header, escape_formula_cells, unescape_formulas, write_csv_rows
from ..errors import InvalidInputError, PayloadTooLargeError, PortalError
from ..ingest.modelinfo import numpy_dtype
from .predict import Prediction, run_feeds
from .runtime import LoadedSession, SessionConfig
from .signature import Feeds, coerce, fixed_batch, tensor_inputs

if TYPE_CHECKING:
    from ..core import Portal
    from ..storage.registry import ModelVersion

__all__ = ["BatchJob", "ScoreResult", "ScoringCancelled", "TABLE_SUFFIXES", "count_rows", "score_file",
           "session_config"]

TABLE_SUFFIXES = (".csv", ".parquet")
# 1 MiB blocks: larger ones cost more CPU per row (measured: 16 MiB blocks parse 1M × 30 floats with
# twice the CPU of 1 MiB ones), and the chunk for onnxruntime is assembled from several blocks anyway.
_BLOCK_BYTES = 1 << 20
_FIRST_ROWS = 8_192
_QUEUE_CHUNKS = 2  # per queue: enough to keep every stage busy, few enough to bound memory
_POLL_S = 0.05  # how often a waiting stage looks at the cancel flag
_SAMPLE_ROWS = 256  # rows of the first chunk kept for the prediction log's input sample
# Inputs of about 128 KiB per onnxruntime call (1,092 rows of 30 float32): the activations of a
# tabular model then stay in the CPU caches, and the memory ceiling's arena shrink after each run
# (portal.serving.memlimit) frees little.  1M rows × 30 through the 30 → 256 → 256 → 2 MLP, CPU seconds of
# the whole pipeline by run size: 64 KiB 3.2, 128 KiB 3.3, 256 KiB 3.4, 512 KiB 3.8, 1 MiB 4.2; one
# run of 65,536 rows cost the MLP alone 2.9 s of CPU per 1M rows, runs of 2,048 rows 1.6 s.
_RUN_BYTES = 128 * 1024
_LIST = 8
_MAX_LINE = re.compile(r"Row #(\d+): (.*)", re.S)
_FLOAT_TYPES = {"float16": pa.float32(), "float32": pa.float32(), "float64": pa.float64()}
_INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NAN_WORDS = frozenset({"nan", "+nan", "-nan"})


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return None


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the system after each chunk.

    glibc keeps what threads freed (the chunk-sized numpy buffers), so peak RSS crept up with the
    file: 282 / 346 / 398 MB for 200k / 1M / 5M rows × 30 floats without this.  A jemalloc pool
    with no decay for pyarrow flattened it too, but cost the parser a third more CPU in page faults.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class ScoringCancelled(PortalError):
    """The scoring was cancelled; nothing was written under the output name."""

    status = 499  # "client closed request": only the browser cancels, nothing answers with it


@dataclass
class ScoreResult:
    """What :func:`score_file` did."""

    rows: int
    seconds: float
    unused_columns: tuple[str, ...]
    sample: Feeds | None  # the first rows of the first chunk (the prediction log samples inputs from it)
    frame: pd.DataFrame | None = None  # the results, when no output file was given


# -- which columns feed which input ------------------------------------------------------------------
@dataclass(frozen=True)
class _Input:
    name: str
    columns: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]  # per row: () for [N], (1,) for [N, 1], (k,) for a table, the tail for pixels


@dataclass(frozen=True)
class _Plan:
    inputs: tuple[_Input, ...] | None  # None: the general path (pandas + coerce, chunk by chunk)
    needed: tuple[str, ...]
    unused: tuple[str, ...]


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:_LIST])
    more = len(names) - _LIST
    return shown + (f" and {more} more" if more > 0 else "")


def _rank(spec: dict[str, Any]) -> int | None:
    shape = spec.get("shape")
    return None if shape is None else len(shape)


def _tail(spec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((spec.get("shape") or [])[1:])


def _plan(signature: dict[str, Any], feature_names: Sequence[str] | None, columns: Sequence[str],
          extra_columns: str) -> _Plan:
    """Match a table's columns to the inputs, with the same rules and messages as ``coerce``."""
    if extra_columns not in ("error", "ignore"):
        raise InvalidInputError(f"extra_columns must be 'error' or 'ignore' (not {extra_columns!r})")
    specs = tensor_inputs(signature)
    names = [s["name"] for s in specs]
    single = specs[0] if len(specs) == 1 else None
    per_column = all(n in columns for n in names) and not (
        single and feature_names and _rank(single) == 2 and names[0] not in feature_names and len(feature_names) > 1
    )
    tail = _tail(single) if single else ()
    fixed = all(isinstance(d, int) for d in tail) and bool(tail)
    pixels = (not per_column and single is not None and bool(feature_names) and (_rank(single) or 0) > 2
              and fixed and math.prod(tail) == len(feature_names or ()))
    if per_column:
        wanted = names
    elif pixels:
        wanted = list(feature_names or ())
    elif single is not None and _rank(single) == 2:
        width = tail[0] if tail and isinstance(tail[0], int) else None
        if feature_names:
            wanted = list(feature_names)
        elif width == len(columns):
            wanted = list(columns)
        else:
            raise InvalidInputError(
                f"input {single['name']!r} expects {width or 'a fixed number of'} columns, got "
                f"{len(columns)}; set the version's feature names so columns can be matched by name"
            )
    else:
        wanted = names
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InvalidInputError(f"missing column(s) {_listing(missing)}; the model needs {_listing(wanted)}")
    extra = tuple(c for c in columns if c not in wanted)
    if extra and extra_columns == "error":
        raise InvalidInputError(f"unexpected column(s) {_listing(extra)}; remove them, or ignore extra columns")
    return _Plan(_fast_inputs(specs, wanted, per_column, pixels), tuple(wanted), extra)


def _numeric(dtype: str) -> bool:
    return dtype in _FLOAT_TYPES or dtype in _INT_TYPES


def _fast_inputs(specs: list[dict[str, Any]], wanted: list[str], per_column: bool,
                 pixels: bool) -> tuple[_Input, ...] | None:
    """The inputs the fast path can build, or None where only ``coerce`` knows the rules."""
    if per_column:
        inputs = []
        for spec in specs:
            shape = spec.get("shape")
            if not (_numeric(spec["dtype"]) or spec["dtype"] == "string"):
                return None
            if shape is not None and len(shape) == 1:
                per_row: tuple[int, ...] = ()
            elif shape is not None and len(shape) == 2 and shape[1] == 1:
                per_row = (1,)
            else:
                return None
            inputs.append(_Input(spec["name"], (spec["name"],), spec["dtype"], per_row))
        return tuple(inputs)
    (spec,) = specs
    if not _numeric(spec["dtype"]):
        return None
    tail = _tail(spec)
    if pixels:
        return (_Input(spec["name"], tuple(wanted), spec["dtype"], tuple(int(d) for d in tail)),)
    if _rank(spec) == 2 and (not isinstance(tail[0], int) or tail[0] == len(wanted)):
        return (_Input(spec["name"], tuple(wanted), spec["dtype"], (len(wanted),)),)
    return None


# -- reading ----------------------------------------------------------------------------------------
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


class _Table:
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

    def tables(self, plan: _Plan, *, chunk_rows: int, keep_inputs: bool,
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

    def _diagnose(self, plan: _Plan, consumed: int, exc: BaseException) -> InvalidInputError:
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


def _parse_types(plan: _Plan, keep_inputs: bool) -> dict[str, pa.DataType]:
    """The type pyarrow parses each model column as (floats for integers too: ``1.0`` is a valid 1)."""
    types: dict[str, pa.DataType] = {}
    for inp in plan.inputs or ():
        if inp.dtype == "string":
            kind = pa.string()
        elif inp.dtype in _FLOAT_TYPES and not keep_inputs:
            kind = _FLOAT_TYPES[inp.dtype]
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
    from .signature import cast  # dates, decimals, nested: the general rules and messages

    return cast(column.to_numpy(zero_copy_only=False), "float64", f"column {name!r}")


def _first_null(column: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])


def _matrix(table: pa.Table, inp: _Input, where: Callable[[int], str]) -> np.ndarray:
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


def _to_feeds(plan: _Plan, table: pa.Table, start: int, csv: bool) -> Feeds:
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


def _general_feeds(version: ModelVersion, table: pa.Table, start: int, csv: bool, extra_columns: str) -> Feeds:
    """Feeds through pandas and ``coerce`` (signatures the fast path does not cover)."""
    try:
        return coerce(version.signature, table.to_pandas(), feature_names=version.feature_names,
                      extra_columns=extra_columns)
    except InvalidInputError as exc:
        span = f"lines {start + 2:,}–{start + table.num_rows + 1:,}" if csv else \
            f"rows {start + 1:,}–{start + table.num_rows:,}"
        raise InvalidInputError(f"{span}: {exc.message}") from None


# -- results ------------------------------------------------------------------------------------------
def _results(version: ModelVersion, outputs: dict[str, np.ndarray], keys: dict[str, list[Any]], rows: int) -> pa.Table:
    prediction = Prediction(ref=version.ref, outputs=outputs, rows=rows, latency_s=0.0, task=version.task,
                            class_labels=version.class_labels, output_keys=keys)
    columns = prediction.columns()
    try:  # straight from the arrays: a pandas frame per chunk costs more than the arrow table
        return pa.table({name: pa.array(values, type=pa.string() if values.dtype == object else None)
                         for name, values in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # objects that are not text: pandas decides
        return pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False, nthreads=1)


def _joined(keep: pa.Table | None, results: pa.Table) -> pa.Table:
    """The input columns, then the results (a result named like an input gets ``_predicted``)."""
    if keep is None:
        return results
    taken = set(keep.column_names)
    names = [f"{n}_predicted" if n in taken else n for n in results.column_names]
    return pa.Table.from_arrays([*keep.columns, *results.columns], names=[*keep.column_names, *names])


class _Sink:
    """The output file: CSV (formulas escaped) or Parquet, in a temp file until :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.suffix = path.suffix.lower()
        if self.suffix not in TABLE_SUFFIXES:
            raise InvalidInputError(f"cannot stream results to {path.name!r}: use a .csv or .parquet output")
        if not path.parent.is_dir():
            raise InvalidInputError(f"cannot write {path}: the folder {path.parent} does not exist")
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        self._stream: Any = None
        self._parquet: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table, input_columns: frozenset[str]) -> None:
        if self.suffix == ".csv":
            if self._stream is None:
                self._stream = pa.OSFile(str(self.tmp), "wb")
                self._stream.write(csv_header(table.column_names))
            columns = []
            for name, column in zip(table.column_names, table.columns, strict=True):
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    # input cells are text as read, so a number such as -2 is left alone
                    column = escape_formula_cells(column, numbers_are_safe=name in input_columns)
                columns.append(column)
            write_csv_rows(pa.Table.from_arrays(columns, names=table.column_names), self._stream)
            return
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(str(self.tmp), table.schema)
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInputError(f"the results changed type part-way ({exc}); write a .csv instead") from exc
        self._parquet.write_table(table)

    def commit(self) -> None:
        """Flush, fsync and rename into place."""
        self._close()
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None


# -- inference ------------------------------------------------------------------------------------------
def _infer(
    loaded: LoadedSession, feeds: Feeds, *, run_rows: int, fixed: int | None, options: ort.RunOptions,
    helpers: ThreadPoolExecutor | None, parts: int,
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    """``run_feeds`` on the chunk, in ``parts`` pieces at once: the calling thread and ``helpers``.

    The session runs each call on one thread; one call per core, on parts of the chunk, keeps every
    core busy whenever the reader and writer leave it idle, with no spinning thread pool competing
    with them (onnxruntime's own pool spins between parallel sections).
    """
    if helpers is None or (fixed or 1) > 1 or feeds.rows < 2 * run_rows:
        return run_feeds(loaded, feeds, chunk_rows=run_rows, fixed_batch=fixed, run_options=options)
    step = math.ceil(math.ceil(feeds.rows / parts) / run_rows) * run_rows
    bounds = [(a, min(a + step, feeds.rows)) for a in range(0, feeds.rows, step)]

    def part(a: int, b: int) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
        piece = Feeds({k: v[a:b] for k, v in feeds.arrays.items()}, b - a, feeds.unused_columns)
        return run_feeds(loaded, piece, chunk_rows=run_rows, fixed_batch=fixed, run_options=options)

    pending = [helpers.submit(part, a, b) for a, b in bounds[1:]]
    results = [part(*bounds[0])] + [f.result() for f in pending]
    outputs = {name: np.concatenate([r[0][name] for r in results]) if value.ndim else results[-1][0][name]
               for name, value in results[0][0].items()}
    return outputs, results[-1][1]


# -- the pipeline -------------------------------------------------------------------------------------
_DONE = object()


class _Stop(Exception):
    """Another stage failed or the run was cancelled: this one just ends."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event, cancel: threading.Event | None) -> Any:
    while True:
        if cancel is not None and cancel.is_set():
            raise ScoringCancelled("the scoring was cancelled; nothing was written")
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue


def score_file(
    loaded: LoadedSession,
    version: ModelVersion,
    source: str | Path,
    output: str | Path | None,
    *,
    chunk_rows: int,
    extra_columns: str = "error",
    keep_inputs: bool = False,
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    run_options: ort.RunOptions | None = None,
    max_rows: int | None = None,
    name: str | None = None,
) -> ScoreResult:
    """Score the CSV or Parquet file ``source`` with ``loaded`` into ``output`` (None: return the results).

    Args:
        keep_inputs: write every input column before the results (the browser's download).
        cancel: once set, the scoring stops (the onnxruntime run in flight too) and
            :class:`ScoringCancelled` is raised; nothing is written.
        progress: called with the number of rows scored so far after every chunk.
        max_rows: refuse (413) a file with more rows than this.
        name: the file name that messages use (default: the source's).

    Raises:
        InvalidInputError: an unreadable file, missing columns, or a bad value (with its line and column).
    """
    began = time.perf_counter()
    source = Path(source)
    name = name or source.name
    if source.suffix.lower() not in TABLE_SUFFIXES:
        raise InvalidInputError(f"cannot stream {name!r}: use a .csv or .parquet file")
    if not source.is_file():
        raise InvalidInputError(f"no such file: {source}")
    chunk_rows = max(1, int(chunk_rows))
    table = _Table(source, name)
    plan = _plan(version.signature, version.feature_names, table.columns, extra_columns)
    sink = _Sink(Path(output)) if output is not None else None
    options = run_options or ort.RunOptions()
    fixed = fixed_batch(version.signature)
    stop = threading.Event()
    parsed: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    scored: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    collected: list[pa.Table] = []
    failures: list[BaseException] = []
    input_columns = frozenset(table.columns) if keep_inputs else frozenset()
    types = _parse_types(plan, keep_inputs)

    def read() -> None:
        try:
            start = 0
            for chunk in table.tables(plan, chunk_rows=chunk_rows, keep_inputs=keep_inputs, types=types):
                if max_rows is not None and start + chunk.num_rows > max_rows:
                    raise PayloadTooLargeError(f"more than {max_rows:,} rows in one request is over the limit of "
                                               f"{max_rows:,}; split the batch")
                if plan.inputs is not None:
                    feeds = _to_feeds(plan, chunk, start, table.csv)
                else:
                    feeds = _general_feeds(version, chunk, start, table.csv, extra_columns)
                _put(parsed, (start, feeds, chunk if keep_inputs else None), stop)
                start += chunk.num_rows
            _put(parsed, _DONE, stop)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the calling thread, raised there
            failures.append(exc)
            stop.set()

    def write() -> None:
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    options.terminate = True  # stops the onnxruntime run in flight, too
                    stop.set()
                    return
                try:
                    item = scored.get(timeout=_POLL_S)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is _DONE:
                    return
                outputs, keys, count, keep = item
                # the result columns are made here, not on the thread that feeds onnxruntime
                table = _joined(keep, _results(version, outputs, keys, count))
                del item, outputs, keep
                if sink is None:
                    collected.append(table)
                else:
                    sink.write(table, input_columns)
                    del table
                    _trim_heap()
        except _Stop:
            pass
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    cores = os.cpu_count() or 1
    helpers = ThreadPoolExecutor(cores - 1, thread_name_prefix="portal-batch-infer") if cores > 1 else None
    reader = threading.Thread(target=read, name="portal-batch-reader", daemon=True)
    writer = threading.Thread(target=write, name="portal-batch-writer", daemon=True)
    reader.start()
    writer.start()
    rows = 0
    run_rows: int | None = None
    unused: tuple[str, ...] = plan.unused
    sample: Feeds | None = None
    ok = False
    try:
        while True:
            try:
                item = _get(parsed, stop, cancel)
            except _Stop:
                break
            if item is _DONE:
                _put(scored, _DONE, stop)
                break
            start, feeds, keep = item
            if sample is None:
                sample = Feeds({k: v[:_SAMPLE_ROWS].copy() for k, v in feeds.arrays.items()},
                               min(feeds.rows, _SAMPLE_ROWS), feeds.unused_columns)
                unused = feeds.unused_columns
            if run_rows is None:
                row_bytes = sum(a.nbytes for a in feeds.arrays.values()) / max(1, feeds.rows)
                run_rows = int(min(chunk_rows, max(64, _RUN_BYTES // max(1.0, row_bytes))))
            try:
                outputs, keys = _infer(loaded, feeds, run_rows=run_rows, fixed=fixed, options=options,
                                       helpers=helpers, parts=cores)
            except Exception:
                if cancel is not None and cancel.is_set():
                    raise ScoringCancelled("the scoring was cancelled; nothing was written") from None
                raise
            _put(scored, (outputs, keys, feeds.rows, keep), stop)
            rows += feeds.rows
            if progress is not None:
                progress(rows)
        writer.join()
        if cancel is not None and cancel.is_set():
            raise ScoringCancelled("the scoring was cancelled; nothing was written")
        if failures:
            raise failures[0]
        if rows == 0:
            raise InvalidInputError(f"{name} has no data rows")
        if sink is not None:
            sink.commit()
        ok = True
    except _Stop:
        raise failures[0] if failures else ScoringCancelled("the scoring was cancelled; nothing was written")
    finally:
        stop.set()
        reader.join()
        writer.join()
        if helpers is not None:
            helpers.shutdown(wait=True)
        if sink is not None and not ok:
            sink.discard()
    frame = None
    if sink is None:
        frame = pa.concat_tables(collected).to_pandas() if collected else pd.DataFrame()
    return ScoreResult(rows=rows, seconds=time.perf_counter() - began, unused_columns=unused, sample=sample,
                       frame=frame)


def session_config() -> SessionConfig:
    """onnxruntime's options for batch scoring: one thread per run; :func:`_infer` runs one per core."""
    return SessionConfig(intra_op_threads=1)


# -- sizes, for progress bars -----------------------------------------------------------------------------
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


# -- a background job, for the browser -----------------------------------------------------------------
class BatchJob:
    """Scores one uploaded file in a background thread, cancellable, into a staging folder.

    ``portal.predict_file`` does the work (so the log, the roles and the
    pipeline are the same as everywhere).  When it is done, ``download`` maps
    the result file into memory (the folder is removed at once; the mapping
    keeps the bytes until the job is dropped), so a finished job leaves no
    file behind and holds no copy of the results on the heap.
    """

    def __init__(self, portal: Portal, version: ModelVersion, data: bytes, filename: str, *, keep_inputs: bool = True,
                 preview_rows: int = 10_000) -> None:
        suffix = Path(filename).suffix.lower()
        if suffix not in TABLE_SUFFIXES:
            raise InvalidInputError(f"cannot score {filename!r}: use a .csv or .parquet file")
        self.portal = portal
        self.version = version
        self.filename = filename
        self.folder = portal.store.make_staging_dir("batch")
        weakref.finalize(self, shutil.rmtree, self.folder, True)
        # the upload's own name, so that messages name the user's file
        self.source = self.folder / (Path(filename.replace("\x00", "")).name or f"input{suffix}")
        self.source.write_bytes(data)
        self.output = self.folder / f".{uuid.uuid4().hex}-predictions.csv"
        self.total_rows = count_rows(self.source)
        self.keep_inputs = keep_inputs
        self.preview_rows = preview_rows
        self.rows_done = 0
        self.seconds = 0.0
        self.error: PortalError | None = None
        self.cancelled = False
        self.preview: pd.DataFrame | None = None
        self.download: mmap.mmap | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="portal-batch-job", daemon=True)

    def start(self) -> BatchJob:
        self._thread.start()
        return self

    def _progress(self, rows: int) -> None:
        self.rows_done = rows

    def _run(self) -> None:
        began = time.perf_counter()
        try:
            self.portal.predict_file(self.version, self.source, self.output, extra_columns="ignore",
                                     keep_inputs=self.keep_inputs, progress=self._progress, cancel=self._cancel)
            # shown on the page as the model answered: the quotes that keep spreadsheets from running
            # a cell are for the download only
            self.preview = unescape_formulas(pd.read_csv(self.output, nrows=self.preview_rows))
            with open(self.output, "rb") as fh:
                self.download = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ScoringCancelled:
            self.cancelled = True
        except PortalError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - shown to the user, never lost
            self.error = PortalError(f"the scoring failed: {exc}")
        finally:
            self.seconds = time.perf_counter() - began
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._thread.ident is not None

    @property
    def fraction(self) -> float:
        return min(1.0, self.rows_done / self.total_rows) if self.total_rows else 0.0

    def cancel(self) -> None:
        """Stop the scoring; nothing is kept."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job ends (True) or ``timeout`` passes (False)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
