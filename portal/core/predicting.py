"""Predictions for the current user, through the one pipeline of :mod:`portal.serving.pipeline`.

The facade only resolves the reference for the user and names the caller and
the door (``actor``, ``source``); coercion, the session, the run and the log
are the pipeline's, the same as the API's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import NotFoundError
from ..serving.dataio import write_frame
from ..serving.predict import Prediction
from ..serving.runtime import LoadedSession, SessionConfig
from ..serving.signature import Feeds
from ..storage.refs import ModelRef
from ..storage.registry import ModelVersion
from .access import Access

__all__ = ["Predicting"]


class Predicting(Access):
    """Sessions, coercion, prediction and file scoring of the versions the current user may see."""

    def session(self, version: ModelVersion, *, config: SessionConfig = SessionConfig()) -> LoadedSession:
        """The shared onnxruntime session of ``version``."""
        return self.pipeline.session(version, config)

    def _blob_source(self, version: ModelVersion) -> Path | bytes:
        """The version's model file (a path), or its bytes on an encrypted store, for a session to load."""
        try:
            path = self.store.local_path(version.blob_sha)
        except NotFoundError:
            self.invalidate()
            if not self.registry.blob_in_use(version.blob_sha):
                raise NotFoundError(f"{version.ref} was deleted") from None
            raise
        return path if path is not None else self.store.read_bytes(version.blob_sha)

    def coerce(self, ref: str | ModelRef | ModelVersion, data: Any, **options: Any) -> Feeds:
        """The feeds ``predict`` would run for ``data`` (for previews and checks)."""
        return self.pipeline.coerce(self.get(ref), data, **options)

    def images_to_array(self, ref: str | ModelRef | ModelVersion, images: Sequence[Any], names: Sequence[str] | None = None) -> np.ndarray:
        """Decode and preprocess images (paths, bytes or PIL images) for ``ref``."""
        return self.pipeline.images(self.get(ref), images, names)

    def predict(
        self,
        ref: str | ModelRef | ModelVersion,
        data: Any,
        *,
        allow_nan: bool = False,
        extra_columns: str = "error",
        run_options: Any = None,
        log: bool = True,
        column_map: Mapping[str, str] | None = None,
    ) -> Prediction:
        """Predict with the version ``ref`` on ``data`` (see :func:`portal.serving.signature.coerce`).

        Every call is queued to the prediction log (see :mod:`portal.monitor.log`),
        failures included once the version is known, unless ``log`` is False: the
        portal's own work (explanations) is not traffic and stays out of the log.
        """
        return self.pipeline.predict(self.get(ref), data, caller=self.actor, source=self.source, allow_nan=allow_nan,
                                     extra_columns=extra_columns, run_options=run_options, log=log,
                                     column_map=column_map)

    def log_prediction(
        self,
        version: ModelVersion,
        *,
        rows: int,
        latency_s: float,
        error: BaseException | None = None,
        feeds: Feeds | None = None,
        cache_hit: bool | None = None,
        caller: str | None = None,
        source: str | None = None,
    ) -> None:
        """Queue one prediction to the log (the pipeline does for every prediction it runs).

        ``caller`` and ``source`` default to this portal's actor and source.
        """
        self.pipeline.record(version, caller=caller or self.actor, source=source or self.source, rows=rows,
                             latency_s=latency_s, error=error, feeds=feeds, cache_hit=cache_hit)

    def predict_file(
        self,
        ref: str | ModelRef,
        path: str | Path,
        output: str | Path | None = None,
        *,
        extra_columns: str = "error",
        progress: Callable[[int], None] | None = None,
        keep_inputs: bool = False,
        cancel: threading.Event | None = None,
        column_map: Mapping[str, str] | None = None,
    ) -> pd.DataFrame | Prediction:
        """Score a file; CSV and Parquet are streamed (parse, infer and write overlap; memory bounded by the chunk size).

        With ``output`` the results are written there and a one-row summary is
        returned; without it the results table.  A CSV or Parquet output of a
        table is written to a temp file and renamed into place when every row is
        scored, so an error (which names the line and column) or a ``cancel``
        (a ``threading.Event``) leaves nothing under the output name.
        ``keep_inputs`` writes the input columns before the results; ``column_map``
        (``{model column: file column}``) names the file's columns the model calls otherwise.  The whole
        file is one entry in the prediction log.  See :mod:`portal.serving.batch`.
        """
        version = self.get(ref)
        path = Path(path)
        if path.suffix.lower() not in (".csv", ".parquet"):
            prediction = self.predict(version, path, extra_columns=extra_columns, column_map=column_map)
            if output is not None:
                write_frame(prediction.to_frame(), Path(output), outputs=prediction.outputs)
            return prediction
        result = self.pipeline.score(version, path, output, caller=self.actor, source=self.source,
                                     extra_columns=extra_columns, keep_inputs=keep_inputs, cancel=cancel,
                                     progress=progress, column_map=column_map)
        return pd.DataFrame({"rows": [result.rows]}) if output is not None else result.frame
