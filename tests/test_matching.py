"""Column names matched exactly, then by normalised spelling (issue 14, item 3)."""

from __future__ import annotations

import pytest

from portal import InvalidInputError
from portal.serving.batch.columns import plan_columns
from portal.serving.matching import match_names, normalise_name


@pytest.mark.parametrize(("name", "key"), [
    ("malic acid", "malic_acid"), ("Malic-Acid", "malic_acid"), ("malic__acid ", "malic_acid"),
    ("od280/od315_of_diluted_wines", "od280_od315_of_diluted_wines"), ("Größe (cm)", "grösse_cm"),
])
def test_normalise_name(name: str, key: str) -> None:
    assert normalise_name(name) == key


def test_exact_then_normalised_and_the_rest_missing() -> None:
    match = match_names(["alcohol", "malic_acid", "ash"], ["alcohol", "malic acid", "colour"])
    assert match.found == {"alcohol": "alcohol", "malic_acid": "malic acid"}
    assert match.normalised == (("malic_acid", "malic acid"),) and match.missing == ("ash",)
    assert match.renames == {"malic acid": "malic_acid"}


def test_two_columns_of_one_spelling_are_ambiguous() -> None:
    match = match_names(["malic_acid"], ["malic acid", "Malic-Acid"])
    assert match.missing == ("malic_acid",) and match.ambiguous == {"malic_acid": ("malic acid", "Malic-Acid")}
    assert "could be any of 'malic acid', 'Malic-Acid'" in match.missing_message(["malic_acid"])


def test_two_model_columns_of_one_spelling_are_ambiguous() -> None:
    match = match_names(["a b", "a_b"], ["A-B"])
    assert set(match.missing) == {"a b", "a_b"} and match.normalised == ()


def test_a_column_exactly_named_for_another_model_column_is_not_borrowed() -> None:
    match = match_names(["x_1", "X 1"], ["x_1"])
    assert match.found == {"x_1": "x_1"} and match.missing == ("X 1",)


def test_a_mapping_comes_first_and_is_checked() -> None:
    assert match_names(["a", "b"], ["a", "q"], mapping={"b": "q"}).found == {"a": "a", "b": "q"}
    with pytest.raises(InvalidInputError, match="one file column"):
        match_names(["a", "b"], ["q"], mapping={"a": "q", "b": "q"})
    with pytest.raises(InvalidInputError, match="already has a column 'a'"):
        match_names(["a"], ["a", "q"], mapping={"a": "q"})


def _spec(name: str, shape: list, dtype: str = "float32") -> dict:
    return {"name": name, "kind": "tensor", "dtype": dtype, "shape": shape}


def test_batch_plan_reads_the_files_own_names() -> None:
    signature = {"inputs": [_spec("malic_acid", [None, 1]), _spec("ash", [None, 1])], "outputs": []}
    plan = plan_columns(signature, None, ["Ash", "malic acid", "extra"], "ignore")
    assert plan.needed == ("malic acid", "Ash") and plan.unused == ("extra",)
    assert plan.inputs is not None and [i.columns for i in plan.inputs] == [("malic acid",), ("Ash",)]
    assert plan.matched == (("malic_acid", "malic acid"), ("ash", "Ash"))


def test_batch_plan_of_a_table_input_with_feature_names() -> None:
    signature = {"inputs": [_spec("x", [None, 3])], "outputs": []}
    plan = plan_columns(signature, ["a b", "c", "d"], ["C", "a-b", "dee"], "error", column_map={"d": "dee"})
    assert plan.needed == ("a-b", "C", "dee") and plan.renames == {"a-b": "a b", "C": "c", "dee": "d"}
    with pytest.raises(InvalidInputError, match=r"missing column\(s\) 'd'"):
        plan_columns(signature, ["a b", "c", "d"], ["C", "a-b", "dee"], "ignore")
