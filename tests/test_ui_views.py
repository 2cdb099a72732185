"""portal.views and portal.figures: the plain-data side of the pages."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tiny import image_model, softmax_classifier, two_input_model

from portal import figures
from portal import views
from portal.errors import InvalidInputError
from portal.ingest.modelinfo import describe_model
from portal.storage.registry import ModelSummary, ModelVersion

NOW = dt.datetime(2026, 11, 23, 12, 0)


def _version(model: Any = None, *, name: str = "m", number: int = 1, meta: dict[str, Any] | None = None,
             task: str = "classification", **fields: Any) -> ModelVersion:
    info = describe_model(model if model is not None else softmax_classifier())
    defaults: dict[str, Any] = dict(
        name=name, version=number, blob_sha="ab" * 32, size_bytes=2048, source_format="onnx", info=info,
        meta=meta or {}, description="", task=task, tags=(), owner="me", parent=None, method=None,
        method_params={}, reference_sha=None, created_at=NOW, created_by="me",
    )
    return ModelVersion(**{**defaults, **fields})


def _summary(name: str, versions: list[ModelVersion], **fields: Any) -> ModelSummary:
    defaults: dict[str, Any] = dict(name=name, description="", task="classification", tags=(), owner="me",
                                    visibility="private", created_at=NOW, updated_at=NOW)
    return ModelSummary(**{**defaults, **fields}, versions=tuple(versions))


def test_format_bytes() -> None:
    assert [views.format_bytes(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B", "1023 B", "1.5 KB", "5.0 MB", "3.0 GB"]


def test_parse_shape_accepts_commas_spaces_and_x() -> None:
    assert views.parse_shape("1, 3, 224, 224") == views.parse_shape("1x3x224x224") == [1, 3, 224, 224]


@pytest.mark.parametrize("text", ["", "1,a", "0,3", "-1"])
def test_parse_shape_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidInputError, match="input shape"):
        views.parse_shape(text)


def test_parse_list_splits_lines_and_commas() -> None:
    assert views.parse_list("a, b\nc,,\n") == ["a", "b", "c"]


def test_suggest_name_makes_a_valid_name() -> None:
    assert views.suggest_name("My Model.v2.onnx") == "My-Model"
    assert views.suggest_name("...onnx") == "model"


def test_demote_headings_leaves_code_blocks_alone() -> None:
    text = "# Title\n```\n# comment\n```\n## Sub"
    assert views.demote_headings(text) == "### Title\n```\n# comment\n```\n#### Sub"


def test_signature_frame_lists_inputs_then_outputs() -> None:
    frame = views.signature_frame(_version().signature)
    assert frame.to_dict("records") == [
        {"Direction": "input", "Name": "x", "Kind": "tensor", "Type": "float32", "Shape": "[N, 4]"},
        {"Direction": "output", "Name": "probs", "Kind": "tensor", "Type": "float32", "Shape": "[N, 3]"},
    ]


def test_search_models_matches_every_word_and_sorts() -> None:
    models = [
        _summary("wine", [_version(name="wine")], tags=("tabular",), description="# Wine\n\ncultivars"),
        _summary("Digits", [_version(name="Digits", size_bytes=9000)], tags=("image",)),
        _summary("diabetes", [_version(name="diabetes")], task="regression", tags=("tabular",)),
    ]
    assert list(views.search_models(models)["Model"]) == ["diabetes", "Digits", "wine"]
    assert list(views.search_models(models, "tabular regression")["Model"]) == ["diabetes"]
    assert list(views.search_models(models, "CULTIVARS")["Model"]) == ["wine"]
    assert list(views.search_models(models, sort="Largest")["Model"])[0] == "Digits"
    with pytest.raises(InvalidInputError, match="invalid sort"):
        views.search_models(models, sort="Colour")


def test_summary_line_skips_headings_and_tables() -> None:
    assert views.summary_line("# Title\n\n| a | b |\nThe **first** line.") == "Title"
    assert views.summary_line("\n\nplain text") == "plain text"


def test_input_mode_follows_the_signature() -> None:
    assert views.input_mode(_version()) == "tabular"
    assert views.input_mode(_version(two_input_model())) == "tabular"
    assert views.input_mode(_version(image_model())) == "image"


def test_form_fields_use_reference_medians_and_categories() -> None:
    version = _version(two_input_model(), task="other")
    reference = pd.DataFrame({"num": [1.0, 2.0, 10.0], "cat": ["b", "a", "b"]})
    fields = views.feature_fields(version, reference)
    assert fields == [views.FeatureField("num", "number", 2.0), views.FeatureField("cat", "category", "b", ("a", "b"))]
    assert views.row_values(fields, reference, 2) == {"num": 10.0, "cat": "b"}


def test_form_fields_without_feature_names_or_reference() -> None:
    fields = views.feature_fields(_version(), None)
    assert [f.name for f in fields] == ["feature_0", "feature_1", "feature_2", "feature_3"]
    assert {f.default for f in fields} == {0.0}


def test_row_values_refuses_a_missing_row() -> None:
    fields = views.feature_fields(_version(), None)
    with pytest.raises(InvalidInputError, match="rows 0 to 1"):
        views.row_values(fields, pd.DataFrame(np.zeros((2, 4))), 5)


def test_too_many_columns_for_a_form() -> None:
    version = _version(softmax_classifier(n_in=500))
    with pytest.raises(InvalidInputError, match="too many for a form"):
        views.feature_fields(version, None)


def test_match_columns_reports_missing_and_extra() -> None:
    version = _version(meta={"feature_names": ["a", "b", "c", "d"]})
    match = views.match_columns(version, ["a", "b", "x", "d", "target"])
    assert (match.missing, match.extra, match.ok) == (("c",), ("x", "target"), False)


def test_match_columns_by_position_without_feature_names() -> None:
    match = views.match_columns(_version(), ["p", "q", "r", "s"])
    assert match.positional and match.ok


def test_join_results_renames_clashing_columns() -> None:
    joined = views.join_results(pd.DataFrame({"prediction": [1]}, index=[9]), pd.DataFrame({"prediction": [2]}))
    assert joined.to_dict("records") == [{"prediction": 1, "prediction_predicted": 2}]


def test_compare_versions_marks_differences() -> None:
    first = _version()
    second = _version(softmax_classifier(n_out=2), number=2, size_bytes=4096)
    table = views.compare_versions(first, second).set_index("Property")
    assert table.loc["Size", "Differs"] == "≠" and table.loc["Opset", "Differs"] == ""
    assert list(table.columns) == ["m:1", "m:2", "Differs"]


def test_previous_alias_target_reads_the_last_move() -> None:
    class Event:
        def __init__(self, action: str, detail: dict[str, Any]) -> None:
            self.action, self.detail = action, detail

    assert views.previous_alias_target([Event("alias.set", {"version": 3, "previous": 2})]) == 2
    assert views.previous_alias_target([Event("alias.set", {"version": 3, "previous": None})]) is None


def test_top_classes_sorted_by_probability() -> None:
    row = {"prediction": "b", "proba_a": 0.2, "proba_b": 0.7, "proba_c": 0.1, "confidence": 0.7}
    assert list(views.top_classes(row, k=2).items()) == [("b", 0.7), ("a", 0.2)]


def test_versions_frame_shows_links() -> None:
    v2 = replace(_version(number=2), parent="m:1", method="int8")
    frame = views.versions_frame(_summary("m", [v2, _version()]), {"m:1": ["m:2"]})
    assert frame[["Version", "Parent", "Method", "Variants"]].to_dict("records") == [
        {"Version": 2, "Parent": "m:1", "Method": "int8", "Variants": ""},
        {"Version": 1, "Parent": "", "Method": "", "Variants": "m:2"},
    ]


# -- figures -------------------------------------------------------------------------
def _axis_titles(fig: Any) -> tuple[str, str]:
    return fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def test_operator_histogram_is_labelled_and_folds_the_tail() -> None:
    ops = {f"Op{i}": 30 - i for i in range(30)}
    fig = figures.operator_histogram(ops, top=10)
    assert fig.layout.title.text.startswith("Operators in the graph")
    assert _axis_titles(fig) == ("nodes", "operator")
    assert list(fig.data[0].y)[0] == "other (21 types)" and len(fig.data[0].y) == 10


def test_prediction_distribution_counts_classes_or_bins_values() -> None:
    classes = figures.prediction_distribution(pd.DataFrame({"prediction": ["a", "b", "a"]}), task="classification")
    assert classes is not None and dict(zip(classes.data[0].x, classes.data[0].y, strict=True)) == {"a": 2, "b": 1}
    values = figures.prediction_distribution(pd.DataFrame({"prediction": [1.0, 2.5]}), task="regression")
    assert values is not None and values.data[0].type == "histogram"
    assert _axis_titles(values) == ("predicted value", "rows")
    assert figures.prediction_distribution(pd.DataFrame({"x": [1]}), task="other") is None


def test_top_k_bar_puts_the_most_probable_on_top() -> None:
    fig = figures.top_k_bar({"a": 0.1, "b": 0.6, "c": 0.3}, k=2)
    assert list(fig.data[0].y) == ["c", "b"] and _axis_titles(fig) == ("probability", "class")


def test_operator_comparison_has_one_trace_per_version() -> None:
    fig = figures.operator_comparison({"Gemm": 2}, {"Gemm": 1, "Relu": 3}, labels=["m:1", "m:2"])
    assert [t.name for t in fig.data] == ["m:1", "m:2"] and fig.layout.showlegend


def test_names_note_compares_counts_with_the_signature() -> None:
    signature = _version().signature
    assert views.names_note(["a", "b", "c", "d"], signature, kind="features") == (
        "4 feature names · the model has 4 columns", True)
    assert views.names_note(["a", "b"], signature, kind="labels") == ("2 class labels · the model has 3 classes", False)
    assert views.names_note([], signature, kind="labels")[1]
