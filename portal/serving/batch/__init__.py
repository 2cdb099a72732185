"""Streamed batch scoring of a CSV or Parquet file: parse, infer and write in three overlapping stages.

This package owns scoring a whole file with one version, with memory bounded by
the chunk size, never by the file: the output is written to a temp file in the
output's folder, fsynced and renamed into place only once every row has been
scored, so an error (reported with its line and column), a cancel or a crash
leaves nothing under the output name.  Models whose inputs are numeric or text
columns take a fast path straight from pyarrow columns; any other signature
goes through pandas and :func:`portal.serving.signature.coerce` chunk by chunk,
through the same three stages.

Modules:

    columns    which table columns feed which model input (checked before any row is read)
    reader     the file read in chunks, each chunk turned into feeds with line-exact refusals
    writer     the result columns of each chunk, and the CSV or Parquet output file
    score      score_file: the reader, inference and writer stages, overlapped
    job        BatchJob: one uploaded file scored in a background thread, for the browser
"""

from __future__ import annotations

from .columns import TABLE_SUFFIXES
from .job import BatchJob
from .reader import count_rows
from .score import RUN_BYTES, ScoreResult, ScoringCancelled, score_file, session_config

__all__ = ["RUN_BYTES", "TABLE_SUFFIXES", "BatchJob", "ScoreResult", "ScoringCancelled", "count_rows", "score_file",
           "session_config"]
