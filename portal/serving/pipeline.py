"""The one predict pipeline of every door: plan, coerce, session, run, log.

``Portal.predict`` (the library, the UI, the CLI) and the API's ``ApiContext``
(REST, Open Inference Protocol v2 over HTTP and gRPC, Ray Serve) both call
:meth:`Pipeline.predict`; :meth:`Pipeline.score` is the same for a CSV or
Parquet file streamed through :mod:`portal.serving.batch`.  The API wraps the
call in its own limits through parameters (the watchdog's ``run_options``, the
adaptive batcher as ``runner``, ``on_error`` to turn a stopped run into a
timeout), never by rebuilding the steps.

Who asked (``caller``) and through which door (``source``) are parameters.
Finished predictions go to a :class:`PredictionSink` handed in
(``portal.monitor.log.PredictionLog`` in the portal), so serving never imports
the monitor package.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .dataio import read_input
from .images import IMAGE_SUFFIXES, load_image, preprocess_images
from .predict import Prediction, run_feeds
from .runtime import LoadedSession, SessionCache, SessionConfig
from .signature import FastPlan, Feeds, coerce, fixed_batch

if TYPE_CHECKING:
    from ..storage.registry import ModelVersion
    from .batch import ScoreResult

__all__ = ["Outputs", "Pipeline", "PredictionSink", "Runner"]

Outputs = tuple[dict[str, np.ndarray], dict[str, list[Any]]]
Runner = Callable[[Feeds], Outputs]
OnError = Callable[[Exception], Exception]
BlobSource = Callable[["ModelVersion"], "Path | bytes"]
DEFAULT_CONFIG = SessionConfig()


def _answer_rows(outputs: dict[str, np.ndarray], default: int) -> int:
    """The rows of an answer to feeds without a shared batch: the outputs' common first dimension, if any."""
    sizes = {value.shape[0] for value in outputs.values() if value.ndim}
    return sizes.pop() if len(sizes) == 1 else default


class PredictionSink(Protocol):
    """Where finished predictions go: ``record`` (and ``record_ok``) queue one and never raise or wait."""

    def record(
        self, name: str, version: int, *, model_id: int | None = None, caller: str, source: str, rows: int,
        latency_s: float, error: BaseException | None = None, feeds: Mapping[str, np.ndarray] | None = None,
        feature_names: list[str] | None = None, cache_hit: bool | None = None,
    ) -> None:
        """Queue one prediction of ``name:version``."""

    def record_ok(self, version: ModelVersion, caller: str, source: str, rows: int, latency_s: float,
                  feeds: Mapping[str, np.ndarray] | None, cache_hit: bool | None) -> None:
        """``record`` of a success of ``version``, by position (the hot path of every prediction)."""


class Pipeline:
    """Plan, coerce, session, run and log, shared by every front door (thread-safe).

    Args:
        cache: the process's sessions.
        blob_source: the version's model file (a path) or its bytes, for a session to load.
        chunk_rows: the most rows of one onnxruntime run.
        max_image_pixels: the largest image an input file may decode to.
        log: where predictions are recorded (None: not recorded).
    """

    def __init__(
        self, cache: SessionCache, blob_source: BlobSource, *, chunk_rows: int, max_image_pixels: int,
        log: PredictionSink | None = None,
    ) -> None:
        self.cache = cache
        self.log = log
        self.chunk_rows = chunk_rows
        self.max_image_pixels = max_image_pixels
        self.blob_source = blob_source
        self._plans: dict[str, tuple[FastPlan | None, int | None]] = {}

    # -- the steps ------------------------------------------------------------
    def session(self, version: ModelVersion, config: SessionConfig = DEFAULT_CONFIG) -> LoadedSession:
        """The shared onnxruntime session of ``version`` with ``config``."""
        return self.cache.get(
            version.blob_sha, lambda: self.blob_source(version), size_bytes=version.size_bytes,
            signature=version.signature, config=config, label=version.ref,
        )

    def plan(self, version: ModelVersion) -> tuple[FastPlan | None, int | None]:
        """The version's fast-path checks and fixed batch size, worked out once per model file."""
        plan = self._plans.get(version.blob_sha)
        if plan is None:
            plan = self._plans[version.blob_sha] = (FastPlan.build(version.signature), fixed_batch(version.signature))
        return plan

    def coerce(
        self, version: ModelVersion, data: Any, *, allow_nan: bool = False, extra_columns: str = "error",
        column_map: Mapping[str, str] | None = None,
    ) -> Feeds:
        """``data`` (or the file a path names) as the version's feeds, by the general rules."""
        if isinstance(data, (str, Path)):
            data = self._read_file(version, Path(data))
        return coerce(version.signature, data, feature_names=version.feature_names,
                      allow_nan=allow_nan, extra_columns=extra_columns, column_map=column_map)

    def _read_file(self, version: ModelVersion, path: Path) -> Any:
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return self.images(version, [path])
        return read_input(path)

    def images(self, version: ModelVersion, images: Sequence[Any], names: Sequence[str] | None = None) -> np.ndarray:
        """Decode (paths, bytes or PIL images) and preprocess images as the version's metadata says."""
        decoded = []
        for i, image in enumerate(images):
            label = names[i] if names else (Path(image).name if isinstance(image, (str, Path)) else f"image {i + 1}")
            if hasattr(image, "convert"):
                decoded.append(image)
            else:
                decoded.append(load_image(image, max_pixels=self.max_image_pixels, name=label))
        return preprocess_images(decoded, version.signature, version.preprocessing)

    def run(
        self, version: ModelVersion, feeds: Feeds, *, config: SessionConfig = DEFAULT_CONFIG, run_options: Any = None,
    ) -> Outputs:
        """Run ready ``feeds`` through the version's session in chunks (the API's batcher runs merged feeds)."""
        return self._run_feeds(self.session(version, config), feeds, self.plan(version)[1], run_options)

    def _run_feeds(self, loaded: LoadedSession, feeds: Feeds, fixed: int | None, run_options: Any) -> Outputs:
        if not feeds.batched:  # inputs without a shared batch dimension: one run, as given
            return run_feeds(loaded, feeds, chunk_rows=max(1, feeds.rows), run_options=run_options)
        return run_feeds(loaded, feeds, chunk_rows=self.chunk_rows, fixed_batch=fixed, run_options=run_options)

    def record(
        self, version: ModelVersion, *, caller: str, source: str, rows: int, latency_s: float,
        error: BaseException | None = None, feeds: Feeds | None = None, cache_hit: bool | None = None,
    ) -> None:
        """Queue one prediction of ``version`` to the log, if there is one."""
        log = self.log
        if log is not None:
            log.record(version.name, version.version, model_id=version.model_id, caller=caller, source=source,
                       rows=rows, latency_s=latency_s, error=error, feeds=feeds.arrays if feeds is not None else None,
                       feature_names=version.feature_names, cache_hit=cache_hit)

    # -- the whole path -------------------------------------------------------
    def predict(
        self,
        version: ModelVersion,
        data: Any,
        *,
        caller: str,
        source: str,
        allow_nan: bool = False,
        extra_columns: str = "error",
        run_options: Any = None,
        config: SessionConfig = DEFAULT_CONFIG,
        runner: Runner | None = None,
        on_error: OnError | None = None,
        rows: int = 0,
        log: bool = True,
        column_map: Mapping[str, str] | None = None,
    ) -> Prediction:
        """Predict with ``version`` on ``data``, logged as ``caller``'s through ``source``, failures included.

        Args:
            run_options: onnxruntime's options of the run (the API's deadline).
            config: the session's options (the API's thread count).
            runner: runs the feeds instead of the session (the API's batcher); no cache hit is logged then.
            on_error: the error to raise and log for a failure (the API: a stopped run becomes a timeout).
            rows: the rows logged for a failure before ``data`` became feeds.
            log: False for the portal's own work (an explanation's model evaluations), which is not
                traffic: nothing is recorded, failures included.
            column_map: ``{model column: table column}`` the user chose for a table's missing columns.
        """
        start = time.perf_counter()
        feeds = None
        hit = None
        try:
            fast, fixed = self.plan(version)
            feeds = fast.feeds(data, allow_nan) if fast is not None else None
            if feeds is None:
                feeds = self.coerce(version, data, allow_nan=allow_nan, extra_columns=extra_columns,
                                    column_map=column_map)
            if runner is None or not feeds.batched:  # the batcher merges rows: feeds without rows run alone
                loaded = self.session(version, config)
                hit = self.cache.last_hit()
                outputs, keys = self._run_feeds(loaded, feeds, fixed, run_options)
            else:
                outputs, keys = runner(feeds)
        except Exception as exc:
            error = self._failed(version, exc, on_error, caller=caller, source=source, start=start,
                                 rows=feeds.rows if feeds is not None else rows, log=log)
            if error is exc:
                raise
            raise error from exc
        latency = time.perf_counter() - start
        sink = self.log
        if log and sink is not None:  # by position, in one call: this runs on every prediction
            sink.record_ok(version, caller, source, feeds.rows, latency, feeds.arrays, hit)
        return Prediction(
            ref=version.ref, outputs=outputs, rows=feeds.rows if feeds.batched else _answer_rows(outputs, feeds.rows),
            latency_s=latency,
            task=version.task, class_labels=version.class_labels, output_keys=keys,
            unused_columns=feeds.unused_columns, matched_columns=feeds.matched_columns,
            index=data.index if isinstance(data, pd.DataFrame) else None,
        )

    def score(
        self,
        version: ModelVersion,
        path: str | Path,
        output: str | Path | None,
        *,
        caller: str,
        source: str,
        config: SessionConfig | None = None,
        on_error: OnError | None = None,
        **options: Any,
    ) -> ScoreResult:
        """Score a CSV or Parquet file with :func:`portal.serving.batch.score_file`: one entry in the log.

        ``config`` defaults to batch scoring's own session options; ``options`` go
        to ``score_file``.  A cancelled scoring is not a failed prediction: it is not logged.
        """
        from .batch import ScoringCancelled, score_file, session_config

        start = time.perf_counter()
        try:
            loaded = self.session(version, config or session_config())
            hit = self.cache.last_hit()
            result = score_file(loaded, version, path, output, chunk_rows=self.chunk_rows, **options)
        except ScoringCancelled:
            raise
        except Exception as exc:
            error = self._failed(version, exc, on_error, caller=caller, source=source, start=start, rows=0)
            if error is exc:
                raise
            raise error from exc
        self.record(version, caller=caller, source=source, rows=result.rows, latency_s=result.seconds,
                    feeds=result.sample, cache_hit=hit)
        return result

    def _failed(self, version: ModelVersion, exc: Exception, on_error: OnError | None, *, caller: str, source: str,
                start: float, rows: int, log: bool = True) -> Exception:
        """Log a failed prediction (when ``log``); return the error to raise (``on_error``'s, else ``exc``)."""
        error = exc if on_error is None else on_error(exc)
        if log:
            self.record(version, caller=caller, source=source, rows=rows, latency_s=time.perf_counter() - start,
                        error=error)
        return error
