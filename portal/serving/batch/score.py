"""Streamed scoring of one file: parse, infer and write in three overlapping stages.

::

    reader thread  ──(≤ 2 chunks)──▶  calling thread + one  ──(≤ 2 chunks)──▶  writer thread
    pyarrow parses the columns the     helper per other core:                the tidy result columns,
    model reads straight into float    onnxruntime on parts of               formula escaping, CSV or
    arrays (no pandas per chunk)       chunk_rows rows                       Parquet into a temp file

pyarrow and onnxruntime release the GIL, so the stages overlap and keep every
core busy (onnxruntime runs one single-threaded call per core, so no spinning
thread pool fights the parser for a core), and the bounded queues keep at most
a handful of chunks alive: memory grows with ``chunk_rows``, never with the file.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa

from ...errors import InvalidInputError, PayloadTooLargeError, PortalError
from ..predict import run_feeds
from ..runtime import LoadedSession, SessionConfig
from ..signature import Feeds, fixed_batch
from .columns import TABLE_SUFFIXES, plan_columns
from .reader import TableReader, general_feeds, parse_types, table_feeds
from .writer import ResultSink, joined, result_table, trim_heap

if TYPE_CHECKING:
    from ...storage.registry import ModelVersion

__all__ = ["RUN_BYTES", "ScoreResult", "ScoringCancelled", "score_file", "session_config"]

_QUEUE_CHUNKS = 2  # per queue: enough to keep every stage busy, few enough to bound memory
_POLL_S = 0.05  # how often a waiting stage looks at the cancel flag
_SAMPLE_ROWS = 256  # rows of the first chunk kept for the prediction log's input sample
# Inputs of about 128 KiB per onnxruntime call (1,092 rows of 30 float32): the activations of a
# tabular model then stay in the CPU caches, and the memory ceiling's arena shrink after each run
# (portal.serving.memlimit) frees little.  1M rows × 30 through the 30 → 256 → 256 → 2 MLP, CPU seconds of
# the whole pipeline by run size: 64 KiB 3.2, 128 KiB 3.3, 256 KiB 3.4, 512 KiB 3.8, 1 MiB 4.2; one
# run of 65,536 rows cost the MLP alone 2.9 s of CPU per 1M rows, runs of 2,048 rows 1.6 s.
RUN_BYTES = 128 * 1024


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
    matched_columns: tuple[tuple[str, str], ...] = ()  # (model column, file column) matched by normalised name


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


# -- the stages --------------------------------------------------------------------------------------
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
    column_map: Mapping[str, str] | None = None,
) -> ScoreResult:
    """Score the CSV or Parquet file ``source`` with ``loaded`` into ``output`` (None: return the results).

    Args:
        keep_inputs: write every input column before the results (the browser's download).
        cancel: once set, the scoring stops (the onnxruntime run in flight too) and
            :class:`ScoringCancelled` is raised; nothing is written.
        progress: called with the number of rows scored so far after every chunk.
        max_rows: refuse (413) a file with more rows than this.
        name: the file name that messages use (default: the source's).
        column_map: ``{model column: file column}`` the user chose for columns the file names otherwise.

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
    table = TableReader(source, name)
    plan = plan_columns(version.signature, version.feature_names, table.columns, extra_columns,
                        column_map=column_map)
    sink = ResultSink(Path(output)) if output is not None else None
    options = run_options or ort.RunOptions()
    fixed = fixed_batch(version.signature)
    stop = threading.Event()
    parsed: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    scored: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    collected: list[pa.Table] = []
    failures: list[BaseException] = []
    input_columns = frozenset(table.columns) if keep_inputs else frozenset()
    types = parse_types(plan, keep_inputs)

    def read() -> None:
        try:
            start = 0
            for chunk in table.tables(plan, chunk_rows=chunk_rows, keep_inputs=keep_inputs, types=types):
                if max_rows is not None and start + chunk.num_rows > max_rows:
                    raise PayloadTooLargeError(f"more than {max_rows:,} rows in one request is over the limit of "
                                               f"{max_rows:,}; split the batch")
                if plan.inputs is not None:
                    feeds = table_feeds(plan, chunk, start, table.csv)
                else:
                    feeds = general_feeds(version, chunk, start, table.csv, extra_columns, plan.renames)
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
                table = joined(keep, result_table(version, outputs, keys, count))
                del item, outputs, keep
                if sink is None:
                    collected.append(table)
                else:
                    sink.write(table, input_columns)
                    del table
                    trim_heap()
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
                run_rows = int(min(chunk_rows, max(64, RUN_BYTES // max(1.0, row_bytes))))
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
                       frame=frame, matched_columns=plan.matched)


def session_config() -> SessionConfig:
    """onnxruntime's options for batch scoring: one thread per run; :func:`_infer` runs one per core."""
    return SessionConfig(intra_op_threads=1)
