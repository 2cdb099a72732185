"""A background batch job for the browser: one uploaded file scored in a thread, cancellable.

The job hands the work to the portal's ``predict_file`` (so the log, the roles
and the pipeline are the same as everywhere) and keeps only what a page shows:
progress, a preview, the download mapped into memory, or the error.
"""

from __future__ import annotations

import mmap
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from ...errors import InvalidInputError, PortalError
from ..dataio import unescape_formulas
from .columns import TABLE_SUFFIXES
from .reader import count_rows
from .score import ScoringCancelled

if TYPE_CHECKING:
    from ...storage.registry import ModelVersion
    from ...storage.store import BlobStore

__all__ = ["BatchJob", "FileScorer"]


class FileScorer(Protocol):
    """What a job needs of the portal (``portal.core.Portal`` is one): a staging folder and ``predict_file``."""

    store: BlobStore

    def predict_file(
        self, ref: Any, path: str | Path, output: str | Path | None = None, *, extra_columns: str = "error",
        progress: Callable[[int], None] | None = None, keep_inputs: bool = False,
        cancel: threading.Event | None = None, column_map: Mapping[str, str] | None = None,
    ) -> Any:
        """Score the file ``path`` with ``ref`` into ``output``."""


class BatchJob:
    """Scores one uploaded file in a background thread, cancellable, into a staging folder.

    ``portal.predict_file`` does the work (so the log, the roles and the
    pipeline are the same as everywhere).  When it is done, ``download`` maps
    the result file into memory (the folder is removed at once; the mapping
    keeps the bytes until the job is dropped), so a finished job leaves no
    file behind and holds no copy of the results on the heap.
    """

    def __init__(self, portal: FileScorer, version: ModelVersion, data: bytes, filename: str, *, keep_inputs: bool = True,
                 preview_rows: int = 10_000, column_map: Mapping[str, str] | None = None) -> None:
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
        self.column_map = dict(column_map or {})
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
                                     keep_inputs=self.keep_inputs, progress=self._progress, cancel=self._cancel,
                                     **({"column_map": self.column_map} if self.column_map else {}))
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
