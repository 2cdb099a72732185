"""The prediction log: one row per prediction request, written in batches off the hot path.

``record`` / ``record_ok`` only append a tuple to a deque (no lock, no I/O); a background
thread turns the queued tuples into rows and inserts them in one transaction every
``flush_seconds``. A batch-1 prediction costs ~25 µs, so the log's 5% budget is about a
microsecond: the writer holds the GIL as little as it can (columns built with ``zip`` and
numpy, thousands of rows per INSERT), because the prediction threads wait for it. Inputs are
sampled (at most ``sample_rows`` rows of one request per ``sample_interval`` seconds per model
version). Rows older than ``retention_days`` are pruned by the writer (hourly at most) and by
``portal monitor prune``. The queue is bounded: if the database is unavailable for long, the
oldest records are dropped (and counted) rather than growing memory without end.

Rows are keyed by the model's id, never by its name, and live only as long as their version:
the registry deletes a version's rows with it, and the writer drops queued records of a version
deleted meanwhile (checked in the inserting transaction, under a key-share lock on PostgreSQL),
so a model registered later under the same name starts with an empty log.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import json
import logging
import math
import operator
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..storage.db import ModelRow, PredictionRow, VersionRow

__all__ = ["PredictionLog", "sample_frame_dict"]

log = logging.getLogger("portal.monitor.stats")

_MAX_ERROR_CHARS = 500
_PRUNE_EVERY_S = 3600.0
_COLUMNS = ("ts", "model_id", "version", "caller", "source", "rows", "latency_ms", "error", "error_kind",
            "cache_hit", "sample")
_DIGITS = 10 ** np.arange(5, -1, -1, dtype=np.int64)  # the six digits of the microseconds
_MODEL_ID = operator.itemgetter(1)
_VERSION = operator.itemgetter(3)


_FAST_FIELDS = 8  # a record_ok entry: (ts, version, caller, source, rows, latency, cache hit, sample)


def _expanded(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """A :meth:`PredictionLog.record_ok` entry as :meth:`PredictionLog.record` queues one (writer thread)."""
    now, version, caller, source, rows, latency, hit, sample = item
    return (now, version.model_id, version.name, version.version, caller, source, rows, latency, None, None, hit,
            sample, None if sample is None else version.feature_names)


def _ts(epoch: float) -> dt.datetime:
    """Naive UTC, like every other timestamp in the database."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def _stamps(epochs: tuple[float, ...], *, text: bool) -> list[Any]:
    """``_ts`` of many epochs at once (ISO text for SQLite), in numpy rather than one call per record."""
    seconds = np.floor(np.asarray(epochs, dtype=np.float64))
    # the fraction alone times 1e6, rounded half to even: exactly what datetime.fromtimestamp does
    fraction = np.rint((np.asarray(epochs, dtype=np.float64) - seconds) * 1e6)
    micros = seconds.astype(np.int64) * 1_000_000 + fraction.astype(np.int64)
    if not text:
        return micros.astype("datetime64[us]").astype(object).tolist()  # datetime.datetime, naive UTC
    return _iso_texts(micros)


def _iso_texts(micros: np.ndarray) -> list[str]:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` of epoch microseconds, as SQLAlchemy keeps SQLite datetimes.

    numpy formats only the first record of each second (records come in time
    order, so a flush has about one per second); the rest are UCS-4 code points
    copied and filled in as arrays: a third of the GIL time of formatting each one.
    """
    whole, fraction = np.divmod(micros, 1_000_000)
    first = np.empty(len(whole), dtype=bool)
    first[:1] = True
    np.not_equal(whole[1:], whole[:-1], out=first[1:])
    heads = np.datetime_as_string(whole[first].astype("datetime64[s]"), unit="s").view(np.uint32)
    heads = heads.reshape(int(first.sum()), -1)
    if heads.shape[1] < 20 or heads[:, 19].any() or not heads[:, 18].all():  # a year outside 1000-9999
        texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
        return [t.replace("T", " ", 1) for t in texts]
    codes = np.empty((len(micros), 26), dtype=np.uint32)
    codes[:, :19] = heads[np.cumsum(first) - 1, :19]
    codes[:, 10] = ord(" ")
    codes[:, 19] = ord(".")
    codes[:, 20:] = fraction[:, None] // _DIGITS % 10 + ord("0")
    return codes.view("<U26").reshape(-1).tolist()


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (np.integer, int, np.bool_, bool)):
        return value.item() if hasattr(value, "item") else value
    return str(value)


def sample_frame_dict(arrays: Mapping[str, np.ndarray], feature_names: list[str] | None) -> dict[str, Any] | None:
    """``{"columns": [...], "rows": [[...]]}`` for tabular inputs; None for images and other tensors.

    One 2-D input gives a column per feature (named by ``feature_names`` when they
    fit); several inputs of shape [N] or [N, 1] give a column each.
    """
    if not arrays:
        return None
    items = list(arrays.items())
    if len(items) == 1 and items[0][1].ndim == 2:
        name, arr = items[0]
        width = arr.shape[1]
        columns = list(feature_names) if feature_names and len(feature_names) == width else [
            f"{name}[{j}]" for j in range(width)
        ]
        rows = [[_cell(v) for v in row] for row in arr.tolist()] if arr.dtype.kind in "fiub" else [
            [_cell(v) for v in row] for row in arr
        ]
        return {"columns": columns, "rows": rows}
    if all(a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1) for _, a in items):
        columns = [name for name, _ in items]
        flat = [a.reshape(-1) for _, a in items]
        n = min(len(a) for a in flat)
        return {"columns": columns, "rows": [[_cell(a[i]) for a in flat] for i in range(n)]}
    return None


class PredictionLog:
    """Batched, bounded writer of prediction records (thread-safe; one per process)."""

    def __init__(
        self,
        engine: Engine,
        *,
        sample_rows: int = 16,
        sample_interval: float = 0.1,
        retention_days: int = 30,
        flush_seconds: float = 0.5,
        max_queue: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.sample_rows = max(0, sample_rows)
        self.sample_interval = sample_interval
        self.retention_days = retention_days
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.clock = clock
        self.dropped = 0
        self.discarded = 0  # records of a version deleted before they were written
        self.written = 0
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._last_sample: dict[tuple[int | str, int], float] = {}
        self._hot: tuple[int | str | None, int, float] = (None, 0, -math.inf)  # see _sample
        self._seen: tuple[Any, float] = (None, -math.inf)  # record_ok's: the version last sampled, when next due
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._last_prune = -math.inf
        # Driver-level statements (SQLAlchemy's per-row parameter processing cost ~14 µs of writer
        # CPU per row), each inserting as many rows as the driver takes parameters: the sqlite3
        # driver lets go of the GIL around every statement it runs, so a statement per row
        # (executemany) made every row two GIL hand-offs with the threads serving predictions.
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._inserts: dict[int, str] = {}
        limit = 999 if engine.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 32) else 32_766
        self._rows_per_insert = limit // len(_COLUMNS)
        self._text_ts = engine.dialect.name == "sqlite"  # SQLAlchemy keeps SQLite datetimes as ISO text
        ref = weakref.ref(self)
        atexit.register(lambda: (obj := ref()) is not None and obj.close())

    # -- hot path -------------------------------------------------------------
    def record(
        self,
        name: str,
        version: int,
        *,
        model_id: int | None = None,
        caller: str,
        source: str,
        rows: int,
        latency_s: float,
        error: BaseException | None = None,
        feeds: Mapping[str, np.ndarray] | None = None,
        feature_names: list[str] | None = None,
        cache_hit: bool | None = None,
    ) -> None:
        """Queue one prediction of ``name:version``; never raises, never waits on the database.

        ``model_id`` (``ModelVersion.model_id``) says which model of that name it was; without it,
        the model that has the name when the record is written."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        now = self.clock()
        if error is None:
            sample = None
            if feeds is not None:
                hot = self._hot
                if now >= hot[2] or version != hot[1] or (name if model_id is None else model_id) != hot[0]:
                    sample = self._sample(now, name if model_id is None else model_id, version, feeds)
            queue.append((now, model_id, name, version, caller, source, rows, latency_s, None, None, cache_hit,
                          sample, feature_names))
        else:
            kind = type(error).__name__
            message = (getattr(error, "message", None) or str(error) or kind)[:_MAX_ERROR_CHARS]
            queue.append((now, model_id, name, version, caller, source, rows, latency_s, message, kind, cache_hit,
                          None, feature_names))
        if self._thread is None:
            self._start()

    def record_ok(self, version: Any, caller: str, source: str, rows: int, latency_s: float,
                  feeds: Mapping[str, np.ndarray] | None, cache_hit: bool | None) -> None:
        """:meth:`record` of a success of ``version`` (a ``ModelVersion``): the pipeline's hot path.

        Arguments by position; the writer, not this thread, reads the version's name, number, model id
        and feature names (ten keywords cost 0.66 µs a call: 2.4% of a ~25 µs batch-1 prediction).
        """
        # every line here runs on every prediction, holding the GIL: kept to the fewest steps
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        now = self.clock()
        sample = None
        if feeds is not None:
            seen = self._seen  # (version object, compared by identity; when next due)
            if version is not seen[0] or now >= seen[1]:
                sample = self._sample(now, version.name if version.model_id is None else version.model_id,
                                      version.version, feeds)
                self._seen = (version, self._hot[2])
        queue.append((now, version, caller, source, rows, latency_s, cache_hit, sample))
        if self._thread is None:
            self._start()

    def _sample(self, now: float, model: int | str, version: int, feeds: Mapping[str, np.ndarray]) -> Any:
        """The first rows of ``feeds`` if the version's last sample is ``sample_interval`` old, else None.

        Remembers the version and when it is next due in ``_hot`` (one tuple, replaced whole, so threads
        never see half of it): until then ``record`` skips the lookup for a request of the same version.
        """
        if not self.sample_rows:  # sampling is off: never due
            self._hot = (model, version, math.inf)
            return None
        key = (model, version)
        last = self._last_sample.get(key)
        sample = None
        if last is None or now - last >= self.sample_interval:
            self._last_sample[key] = last = now
            n = self.sample_rows
            sample = {k: np.array(v[:n]) for k, v in feeds.items() if getattr(v, "ndim", 0) and v.ndim <= 2}
        self._hot = (model, version, last + self.sample_interval)
        return sample

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="portal-prediction-log", daemon=True)
                self._thread.start()

    # -- writer -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
                if self.clock() - self._last_prune >= _PRUNE_EVERY_S:
                    self.prune()
            except Exception:  # the log must never take the portal down
                log.exception("prediction log: write failed; will retry")

    def flush(self) -> int:
        """Write everything queued so far now; return how many rows were written."""
        with self._flush_lock:
            batch: list[tuple[Any, ...]] = []
            while self._queue:
                item = self._queue.popleft()
                batch.append(item if len(item) != _FAST_FIELDS else _expanded(item))
            if not batch:
                return 0
            try:
                with self.engine.connect().execution_options(portal_write=True) as conn:
                    items, model_ids = self._live(conn, batch)
                    params, width, step = self._params(items, model_ids), len(_COLUMNS), self._rows_per_insert
                    for start in range(0, len(items), step):
                        count = min(step, len(items) - start)
                        conn.exec_driver_sql(self._insert(count), tuple(params[start * width:(start + count) * width]))
                    conn.commit()
            except SQLAlchemyError:
                # put them back (oldest first) within the bound, and try again next time
                room = max(0, self.max_queue - len(self._queue))
                keep = batch[-room:] if room else []
                self.dropped += len(batch) - len(keep)
                self._queue.extendleft(reversed(keep))
                raise
            self.discarded += len(batch) - len(items)
            self.written += len(items)
            return len(items)

    def _insert(self, rows: int) -> str:
        sql = self._inserts.get(rows)
        if sql is None:
            group = f"({', '.join([self._mark] * len(_COLUMNS))})"
            sql = self._inserts[rows] = f"INSERT INTO predictions ({', '.join(_COLUMNS)}) VALUES " + ", ".join(
                [group] * rows)
        return sql

    def _live(self, conn: Connection, batch: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """The records of ``batch`` whose version still exists, and their model ids.

        The version rows are read FOR KEY SHARE (PostgreSQL; SQLite already holds the
        write lock), so a concurrent delete waits for this insert and then removes it too.
        Like :meth:`_params`, this holds the GIL: records are looked at one by one only
        when some are keyed by name or some version was deleted meanwhile.
        """
        ids = list(map(_MODEL_ID, batch))
        if None in ids:
            names = {item[2] for item in batch if item[1] is None}
            by_name = dict(conn.execute(
                select(ModelRow.name, ModelRow.id).where(ModelRow.name.in_(sorted(names)))).tuples().all())
            ids = [model_id if model_id is not None else by_name.get(item[2]) for item, model_id in zip(batch, ids)]
        model_ids = sorted(set(ids) - {None})
        if not model_ids:
            return [], []
        live = {(model_id, number) for model_id, number in conn.execute(  # plain tuples: a Row hashes slowly
            select(VersionRow.model_id, VersionRow.number).where(VersionRow.model_id.in_(model_ids))
            .with_for_update(read=True, key_share=True)
        ).tuples()}
        if {(model_id, int(number)) for model_id, number in set(zip(ids, map(_VERSION, batch)))} <= live:
            return batch, ids
        kept = [(item, model_id) for item, model_id in zip(batch, ids) if (model_id, int(item[3])) in live]
        return [item for item, _ in kept], [model_id for _, model_id in kept]

    def _params(self, items: list[tuple[Any, ...]], model_ids: list[int]) -> list[Any]:
        """The insert parameters of every record, row after row, built column by column.

        This runs in the writer thread but holds the GIL, so whatever it costs per
        record slows every prediction thread down (at batch 1 the log's budget is
        about a microsecond per request): the records are transposed with ``zip``,
        the timestamps made by numpy and the columns interleaved by slice
        assignment, so no Python code runs per record but the sample check.
        """
        if not items:
            return []
        now, _, _, versions, callers, sources, counts, latencies, messages, kinds, hits, samples, names = zip(
            *items, strict=True)
        frames = [json.dumps(frame) if sample and (frame := sample_frame_dict(sample, columns)) is not None
                  else None for sample, columns in zip(samples, names, strict=True)]
        columns = (
            _stamps(now, text=self._text_ts), model_ids, list(map(int, versions)), [c or "" for c in callers], sources,
            list(map(int, counts)), (np.asarray(latencies, dtype=np.float64) * 1000.0).tolist(), messages, kinds,
            hits, frames,
        )
        params: list[Any] = [None] * (len(items) * len(columns))
        for k, column in enumerate(columns):
            params[k::len(columns)] = column
        return params

    def prune(self, *, now: float | None = None, older_than_days: float | None = None) -> int:
        """Delete rows older than the retention period; return how many."""
        now = self.clock() if now is None else now
        self._last_prune = now
        days = self.retention_days if older_than_days is None else older_than_days
        cutoff = _ts(now) - dt.timedelta(days=days)
        with self.engine.connect().execution_options(portal_write=True) as conn:
            result = conn.execute(delete(PredictionRow.__table__).where(PredictionRow.__table__.c.ts < cutoff))
            conn.commit()
        return int(result.rowcount or 0)

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        except Exception:
            log.exception("prediction log: final write failed")
