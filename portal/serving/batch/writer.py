"""The results of each chunk as a table, and the output file they go into.

The writer thread turns onnxruntime's outputs into the tidy result columns
(:meth:`portal.serving.predict.Prediction.columns`), joins them to the input
columns when asked, escapes cells a spreadsheet would run as a formula, and
writes CSV or Parquet into a temp file that is renamed into place only once
every row has been scored.
"""

from __future__ import annotations

import ctypes
import functools
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import InvalidInputError
from ..dataio import csv_header, escape_formula_cells, write_csv_rows
from ..predict import Prediction
from .columns import TABLE_SUFFIXES

if TYPE_CHECKING:
    from ...storage.registry import ModelVersion

__all__ = ["ResultSink", "joined", "result_table", "trim_heap"]


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return None


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system after each chunk.

    glibc keeps what threads freed (the chunk-sized numpy buffers), so peak RSS crept up with the
    file: 282 / 346 / 398 MB for 200k / 1M / 5M rows × 30 floats without this.  A jemalloc pool
    with no decay for pyarrow flattened it too, but cost the parser a third more CPU in page faults.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def result_table(version: ModelVersion, outputs: dict[str, np.ndarray], keys: dict[str, list[Any]], rows: int) -> pa.Table:
    prediction = Prediction(ref=version.ref, outputs=outputs, rows=rows, latency_s=0.0, task=version.task,
                            class_labels=version.class_labels, output_keys=keys)
    columns = prediction.columns()
    try:  # straight from the arrays: a pandas frame per chunk costs more than the arrow table
        return pa.table({name: pa.array(values, type=pa.string() if values.dtype == object else None)
                         for name, values in columns.items()})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # objects that are not text: pandas decides
        return pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False, nthreads=1)


def joined(keep: pa.Table | None, results: pa.Table) -> pa.Table:
    """The input columns, then the results (a result named like an input gets ``_predicted``)."""
    if keep is None:
        return results
    taken = set(keep.column_names)
    names = [f"{n}_predicted" if n in taken else n for n in results.column_names]
    return pa.Table.from_arrays([*keep.columns, *results.columns], names=[*keep.column_names, *names])


class ResultSink:
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
