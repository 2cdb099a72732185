"""Plain-data views the pages render: tables, form defaults and checks, column matching.

No streamlit here, so every rule a page follows (what a form's defaults are,
which columns a batch file lacks, how two versions differ) is testable
without a browser and reusable by the REST API. The modules:

- ``formatting``: byte sizes, tensor shapes, a description's summary line, nested markdown headings.
- ``tables``: the signature, model search, latest uploads, versions and version-comparison tables.
- ``forms``: registration and edit checks, name counts, alias rollback target, prediction-form fields.
- ``predict``: input mode, the columns a table needs, column matching, joined results, top classes.
"""

from __future__ import annotations

from ..core import suggest_name
from ..ingest.metadata import parse_list, parse_shape  # the pages parse what users type with these
from .formatting import (
    demote_headings,
    describe_shape,
    format_bytes,
    format_parameters,
    split_conversion_notes,
    summary_line,
)
from .forms import (
    FeatureField,
    check_registration,
    check_version_edit,
    feature_fields,
    names_note,
    previous_alias_target,
    row_values,
)
from .predict import (
    ColumnMatch,
    input_columns,
    input_mode,
    join_results,
    match_columns,
    predict_in_chunks,
    top_classes,
)
from .tables import (
    compare_versions,
    latest_versions,
    models_frame,
    operators_frame,
    search_models,
    signature_frame,
    variant_text,
    versions_frame,
)

__all__ = [
    "ColumnMatch",
    "FeatureField",
    "check_registration",
    "check_version_edit",
    "compare_versions",
    "demote_headings",
    "describe_shape",
    "feature_fields",
    "format_bytes",
    "format_parameters",
    "input_columns",
    "input_mode",
    "join_results",
    "latest_versions",
    "match_columns",
    "models_frame",
    "names_note",
    "operators_frame",
    "parse_list",
    "parse_shape",
    "predict_in_chunks",
    "previous_alias_target",
    "row_values",
    "search_models",
    "signature_frame",
    "split_conversion_notes",
    "suggest_name",
    "summary_line",
    "top_classes",
    "variant_text",
    "versions_frame",
]
