"""Read prediction inputs from files and write results safely.

Readers never unpickle (``np.load(allow_pickle=False)``); CSV downloads escape
cells that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InvalidInputError

__all__ = [
    "INPUT_SUFFIXES",
    "escape_formulas",
    "iter_table_chunks",
    "read_table",
    "read_input",
    "write_frame",
    "frame_to_csv_bytes",
]

INPUT_SUFFIXES = (".csv", ".parquet", ".json", ".npz", ".npy")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|")


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def read_table(source: str | Path | bytes, *, name: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet table into a DataFrame, with readable errors."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "data.csv")
    buffer = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    suffix = _suffix(name)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(buffer)
        return pd.read_csv(buffer)
    except pd.errors.EmptyDataError:
        raise InvalidInputError(f"{Path(name).name} is empty; a CSV needs a header row and at least one data row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        kind = "Parquet" if suffix == ".parquet" else "CSV"
        first = str(exc).strip().split("\n")[0][:300]
        raise InvalidInputError(f"{Path(name).name} is not a readable {kind} file: {first}") from exc


def iter_table_chunks(path: Path, *, chunk_rows: int, prefetch: int = 2) -> Iterator[pd.DataFrame]:
    """Stream a CSV or Parquet file in DataFrames of about ``chunk_rows`` rows.

    A reader thread parses up to ``prefetch`` chunks ahead (pyarrow releases the
    GIL), so parsing overlaps with inference while memory stays bounded.
    """
    import queue
    import threading

    items: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in _read_chunks(path, chunk_rows=chunk_rows):
                while not stop.is_set():
                    try:
                        items.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            items.put(exc)

    thread = threading.Thread(target=produce, name="portal-csv-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _read_chunks(path: Path, *, chunk_rows: int) -> Iterator[pd.DataFrame]:
    suffix = _suffix(path.name)
    suffix = _suffix(path.name)
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        import pyarrow.csv as pacsv

        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24))
        for batch in reader:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows).to_pandas()
    except InvalidInputError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        if "Empty CSV file" in str(exc):
            raise InvalidInputError(f"{path.name} is empty; a CSV needs a header row and at least one data row") from exc
        first = str(exc).strip().split("\n")[0][:300]
        raise InvalidInputError(f"{path.name} is not a readable table: {first}") from exc


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


def write_csv_chunk(frame: pd.DataFrame, writer: Any, path: Path) -> Any:
    """Append ``frame`` to a pyarrow CSV writer (created on the first chunk); formulas escaped."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.Table.from_pandas(escape_formulas(frame), preserve_index=False)
    if writer is None:
        writer = pacsv.CSVWriter(str(path), table.schema)
    try:
        writer.write_table(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        # a later chunk inferred another type for a column (e.g. int vs float): write as text
        writer.write_table(table.cast(pa.schema([(f.name, pa.string()) for f in table.schema])))
    return writer


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
