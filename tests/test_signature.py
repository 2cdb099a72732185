"""Coercion of user data to feeds: forms, safe casts, clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny import int_input_model, softmax_classifier, two_input_model

from portal import InvalidInputError
from portal.ingest.modelinfo import describe_model
from portal.serving.signature import cast, coerce

CLS = describe_model(softmax_classifier())["signature"]
TWO = describe_model(two_input_model())["signature"]
INTS = describe_model(int_input_model())["signature"]
FEATURES = ["a", "b", "c", "d"]


def test_dataframe_columns_are_matched_by_feature_name_in_any_order():
    frame = pd.DataFrame({"d": [4.0], "c": [3.0], "b": [2.0], "a": [1.0]})
    feeds = coerce(CLS, frame, feature_names=FEATURES)
    np.testing.assert_array_equal(feeds.arrays["x"], [[1, 2, 3, 4]])
    assert feeds.arrays["x"].dtype == np.float32 and feeds.rows == 1


def test_one_record_dict_and_list_of_records():
    one = coerce(CLS, {"a": 1, "b": 2, "c": 3, "d": 4}, feature_names=FEATURES)
    many = coerce(CLS, [{"a": 1, "b": 2, "c": 3, "d": 4}] * 3, feature_names=FEATURES)
    assert one.rows == 1 and many.rows == 3


def test_per_column_inputs_with_strings():
    feeds = coerce(TWO, pd.DataFrame({"num": [1, 2], "cat": ["x", "y"]}))
    assert feeds.arrays["num"].shape == (2, 1) and feeds.arrays["num"].dtype == np.float32
    assert feeds.arrays["cat"].dtype == object and feeds.arrays["cat"][1, 0] == "y"


def test_missing_and_extra_columns_are_named():
    with pytest.raises(InvalidInputError, match="missing column.*'d'"):
        coerce(CLS, pd.DataFrame({"a": [1], "b": [1], "c": [1]}), feature_names=FEATURES)
    extra = pd.DataFrame({"a": [1], "b": [1], "c": [1], "d": [1], "id": [7]})
    with pytest.raises(InvalidInputError, match="unexpected column.*'id'"):
        coerce(CLS, extra, feature_names=FEATURES)
    assert coerce(CLS, extra, feature_names=FEATURES, extra_columns="ignore").unused_columns == ("id",)


def test_strings_in_numeric_column_name_the_value():
    frame = pd.DataFrame({"a": [1], "b": ["oops"], "c": [1], "d": [1]})
    with pytest.raises(InvalidInputError, match="column 'b' expects numbers, got 'oops'"):
        coerce(CLS, frame, feature_names=FEATURES)


def test_nan_is_refused_unless_allowed():
    frame = pd.DataFrame({"a": [1, np.nan], "b": [1, 1], "c": [1, 1], "d": [1, 1]})
    with pytest.raises(InvalidInputError, match="NaN.*first at row 1"):
        coerce(CLS, frame, feature_names=FEATURES)
    assert np.isnan(coerce(CLS, frame, feature_names=FEATURES, allow_nan=True).arrays["x"][1, 0])


def test_infinity_is_refused():
    with pytest.raises(InvalidInputError, match="infinite"):
        coerce(CLS, {"x": np.array([[1, np.inf, 1, 1]])})


def test_wrong_shape_says_expected_and_got():
    with pytest.raises(InvalidInputError, match=r"expected shape \[N, 4\], got \[2, 5\]"):
        coerce(CLS, {"x": np.ones((2, 5), np.float32)})
    with pytest.raises(InvalidInputError, match=r"expected shape \[N, 4\], got \[2, 2, 4\]"):
        coerce(CLS, {"x": np.ones((2, 2, 4), np.float32)})


def test_single_sample_without_batch_dimension_is_accepted():
    assert coerce(CLS, np.ones(4)).arrays["x"].shape == (1, 4)


def test_float_to_int_never_truncates():
    assert coerce(INTS, {"counts": np.array([[1.0, 2.0]])}).arrays["counts"].dtype == np.int64
    with pytest.raises(InvalidInputError, match="fractional"):
        coerce(INTS, {"counts": np.array([[1.5, 2.0]])})


def test_int_range_is_checked():
    with pytest.raises(InvalidInputError, match="outside the int8 range"):
        cast(np.array([300]), "int8", "input 'x'")


def test_empty_frame_is_refused():
    with pytest.raises(InvalidInputError, match="no rows"):
        coerce(CLS, pd.DataFrame(columns=FEATURES), feature_names=FEATURES)


def test_unsupported_type_lists_accepted_forms():
    with pytest.raises(InvalidInputError, match="pass a dict of arrays, a DataFrame"):
        coerce(CLS, 42)


def test_multi_input_model_refuses_bare_array():
    with pytest.raises(InvalidInputError, match="has 2 inputs"):
        coerce(TWO, np.ones((2, 1)))
