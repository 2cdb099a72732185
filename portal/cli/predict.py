"""The ``predict`` command: run a model on a file and print or write the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, emit, handles_errors, open_portal

__all__ = ["predict"]


@handles_errors
def predict(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    input: Annotated[Path, typer.Option("--input", "-i", help=".csv, .parquet, .json, .npz, .npy or an image")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write results (.csv, .json, .parquet, .npz)")] = None,
    ignore_extra: Annotated[bool, typer.Option("--ignore-extra-columns", help="Drop columns the model does not use")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict with a model on a file."""
    p = open_portal()
    extra = "ignore" if ignore_extra else "error"
    if output is not None and output.suffix.lower() in (".csv", ".parquet") and input.suffix.lower() in (".csv", ".parquet"):
        summary = p.predict_file(ref, input, output, extra_columns=extra)
        rows = int(summary["rows"].iloc[0])
        emit({"rows": rows, "output": str(output)}, as_json, lambda: f"wrote {rows} predictions to {output}")
        return
    prediction = p.predict(ref, input, extra_columns=extra)
    for model_column, file_column in prediction.matched_columns:
        typer.echo(f"note: column {file_column!r} feeds {model_column!r} (matched by normalised name)", err=True)
    frame = prediction.to_frame()
    if output is not None:
        from ..serving.dataio import write_frame

        write_frame(frame, output, outputs=prediction.outputs)
        emit({"rows": prediction.rows, "output": str(output)}, as_json,
             lambda: f"wrote {prediction.rows} predictions to {output}")
        return
    emit(prediction.to_records(), as_json, lambda: frame.to_string(max_rows=50))
