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


# -- issue 14 item 2: inputs without a shared batch dimension ---------------------------------
def _sig(*shapes):
    return {"inputs": [{"name": f"i{k}", "kind": "tensor", "dtype": "float32", "shape": list(s)}
                       for k, s in enumerate(shapes)], "outputs": []}


@pytest.mark.parametrize(("shapes", "shared"), [
    ([["N", 3]], True),
    ([["N", 3], ["N", 2]], True),
    ([[None, 1], [None, 1]], True),
    ([[1, 3], [1, 4]], True),
    ([["N", 3], [None, 2]], True),
    ([[2, 3, 4], [1, 3, 4], [3, 3, 4]], False),
    ([["n", 3], ["m", 3]], False),
    ([["N", 3], []], False),
    ([[1, 3, 1], [2]], False),
])
def test_shared_batch_follows_the_declared_first_dimensions(shapes, shared):
    from portal.serving.signature import shared_batch

    assert shared_batch(_sig(*shapes)) is shared


def test_arrays_of_different_first_dimensions_pass_as_given_without_a_shared_batch():
    x, y = np.ones((2, 3, 4), np.float32), np.zeros((1, 3, 4), np.float32)
    feeds = coerce(_sig([2, 3, 4], [1, 3, 4]), {"i0": x, "i1": y})
    assert feeds.batched is False and feeds.rows == 1
    np.testing.assert_array_equal(feeds.arrays["i0"], x)
    np.testing.assert_array_equal(feeds.arrays["i1"], y)


def test_arrays_of_different_rows_are_refused_when_the_batch_is_shared():
    with pytest.raises(InvalidInputError, match=r"different numbers of rows: \[2, 3\]"):
        coerce(_sig(["N", 3], ["N", 2]), {"i0": np.ones((2, 3)), "i1": np.ones((3, 2))})


def test_feeds_with_a_shared_batch_are_batched():
    feeds = coerce(_sig(["N", 3], ["N", 2]), {"i0": np.ones((2, 3)), "i1": np.ones((2, 2))})
    assert feeds.batched is True and feeds.rows == 2


# -- issue 14 item 3: column names spelled differently ----------------------------------------
def test_columns_match_by_normalised_name_and_say_so():
    frame = pd.DataFrame({"A": [1.0], "b ": [2.0], "C-": [3.0], "d": [4.0]})
    feeds = coerce(CLS, frame, feature_names=FEATURES)
    np.testing.assert_array_equal(feeds.arrays["x"], [[1, 2, 3, 4]])
    assert dict(feeds.matched_columns) == {"a": "A", "b": "b ", "c": "C-"}


def test_exact_names_win_over_normalised_ones():
    frame = pd.DataFrame({"a": [1.0], "A": [9.0], "b": [2.0], "c": [3.0], "d": [4.0]})
    feeds = coerce(CLS, frame, feature_names=FEATURES, extra_columns="ignore")
    np.testing.assert_array_equal(feeds.arrays["x"], [[1, 2, 3, 4]])
    assert feeds.matched_columns == () and feeds.unused_columns == ("A",)


def test_per_column_inputs_match_by_normalised_name():
    feeds = coerce(TWO, pd.DataFrame({"NUM": [1, 2], "Cat": ["x", "y"]}))
    assert feeds.arrays["cat"][1, 0] == "y" and dict(feeds.matched_columns) == {"num": "NUM", "cat": "Cat"}


def test_a_column_map_is_applied_first_and_checked():
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "fourth": [4.0]})
    feeds = coerce(CLS, frame, feature_names=FEATURES, column_map={"d": "fourth"})
    np.testing.assert_array_equal(feeds.arrays["x"], [[1, 2, 3, 4]])
    with pytest.raises(InvalidInputError, match="'fifth', which the file does not have"):
        coerce(CLS, frame, feature_names=FEATURES, column_map={"d": "fifth"})
    with pytest.raises(InvalidInputError, match="'e', which the model does not take"):
        coerce(CLS, frame, feature_names=FEATURES, column_map={"e": "fourth"})
