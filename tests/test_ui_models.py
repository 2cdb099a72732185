"""The Models page: search, aliases, edits, deletes and the side-by-side view."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tiny import add_model, linear_regressor, softmax_classifier
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    demo_home,
    demo_store,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
    widget,
)

from portal import NotFoundError, Portal
from portal.ingest.modelinfo import describe_model


@pytest.fixture
def iris_home(empty_home: Path) -> Iterator[Path]:
    """``iris`` with two versions (v2 a different model) and ``other`` with one."""
    portal = Portal.open(empty_home)
    add_model(portal, softmax_classifier(), "iris", task="classification", class_labels=["a", "b", "c"])
    add_model(portal, softmax_classifier(n_out=2, seed=4), "iris", task="classification")
    add_model(portal, linear_regressor(), "other", task="regression")
    portal.update_model("iris", description="# Iris\n\nA **tiny** card.", tags=["flowers"])
    portal.close()
    yield empty_home


def _portal(home: Path) -> Portal:
    return Portal.open(home)


def _models_page(name: str = "iris", version: str = "latest") -> AppTest:
    return select_model(new_app("app_pages/models.py"), name, version)


def test_search_filters_the_table(demo_home: Path) -> None:
    at = new_app("app_pages/models.py")
    assert len(at.dataframe[0].value) == 4
    widget(at.text_input, "Search").set_value("disease progression")
    at.run()
    assert list(at.dataframe[0].value["Model"]) == ["diabetes"]
    widget(at.text_input, "Search").set_value("nothing-matches-this")
    at.run()
    assert at.dataframe[0].value.empty
    assert_clean(at)


def test_sort_by_size_puts_the_largest_first(demo_home: Path) -> None:
    at = new_app("app_pages/models.py")
    widget(at.selectbox, "Sort by").select("Largest")
    at.run()
    sizes = list(at.dataframe[0].value["Size"])
    assert sizes == sorted(sizes, reverse=True) and at.dataframe[0].value["Model"].iloc[0] == "digits"


def test_model_card_is_rendered_as_markdown(iris_home: Path) -> None:
    at = _models_page()
    assert at.header[0].value == "iris"
    assert any("### Iris" in m.value and "A **tiny** card." in m.value for m in at.markdown)
    assert elements_of_type(at, "download_button")


def test_point_an_alias_then_roll_it_back(iris_home: Path) -> None:
    at = _models_page()
    at.text_input(key="alias.name.iris").set_value("production")
    at.selectbox(key="alias.version.iris").select(1)
    button(at, "Point alias").click()
    at.run()
    assert _portal(iris_home).get("iris@production").version == 1
    at.selectbox(key="alias.version.iris").select(2)
    button(at, "Point alias").click()
    at.run()
    assert _portal(iris_home).get("iris@production").version == 2
    button(at, "Roll back to v1").click()
    at.run()
    assert_clean(at)
    assert _portal(iris_home).get("iris@production").version == 1
    assert "moved back from v2 to v1" in " ".join(texts(at.success))


def test_remove_an_alias(iris_home: Path) -> None:
    _portal(iris_home).set_alias("iris:2", "staging")
    at = _models_page()
    button(at, "Remove").click()
    at.run()
    with pytest.raises(NotFoundError):
        _portal(iris_home).get("iris@staging")


def test_an_invalid_alias_is_an_error_box(iris_home: Path) -> None:
    at = _models_page()
    at.text_input(key="alias.name.iris").set_value("not valid!")
    button(at, "Point alias").click()
    at.run()
    assert_clean(at)
    assert "invalid alias" in " ".join(texts(at.error))


def test_edit_metadata(iris_home: Path) -> None:
    at = _models_page(version="v1")
    widget(at.text_area, "Description (markdown model card)").set_value("# New card")
    widget(at.text_input, "Tags").set_value("flowers, tabular")
    widget(at.text_area, "Feature names").set_value("sl, sw, pl, pw")
    button(at, "Save changes").click()
    at.run()
    assert_clean(at)
    version = _portal(iris_home).get("iris:1")
    assert version.description == "# New card" and version.tags == ("flowers", "tabular")
    assert version.feature_names == ["sl", "sw", "pl", "pw"]


def test_edit_refuses_labels_that_do_not_fit(iris_home: Path) -> None:
    at = _models_page(version="v1")
    widget(at.text_area, "Class labels").set_value("only, two")
    button(at, "Save changes").click()
    at.run()
    assert_clean(at)
    assert "3 classes" in " ".join(texts(at.error))
    assert _portal(iris_home).get("iris:1").class_labels == ["a", "b", "c"]


def test_compare_two_versions_side_by_side(iris_home: Path) -> None:
    at = _models_page()
    table = next(d.value for d in at.dataframe if "Property" in d.value.columns)
    assert list(table.columns) == ["Property", "iris:1", "iris:2", "Differs"]
    outputs = table.set_index("Property").loc["Outputs"]
    assert "[N, 3]" in outputs["iris:1"] and "[N, 2]" in outputs["iris:2"] and outputs["Differs"] == "≠"
    assert len(elements_of_type(at, "plotly_chart")) >= 1


def _delete(at: AppTest, target: str) -> AppTest:
    widget(at.checkbox, f"I understand that deleting **{target}** cannot be undone").check()
    at.run()
    button(at, f"Delete {target}").click()
    return at.run()


def test_delete_is_refused_while_an_alias_points_at_the_version(iris_home: Path) -> None:
    _portal(iris_home).set_alias("iris:2", "production")
    at = _delete(_models_page(version="v2"), "iris:2")
    assert_clean(at)
    assert "Refused" in " ".join(texts(at.error))
    assert _portal(iris_home).get("iris:2").version == 2


def test_delete_a_version_after_moving_its_alias(iris_home: Path) -> None:
    _portal(iris_home).set_alias("iris:2", "production")
    at = _models_page(version="v2")
    widget(at.selectbox, "@production points at v2").select("v1")
    at.run()
    at = _delete(at, "iris:2")
    assert_clean(at)
    portal = _portal(iris_home)
    assert [v.version for v in portal.get_model("iris").versions] == [1]
    assert portal.get("iris@production").version == 1


def test_delete_a_whole_model_after_removing_its_alias(iris_home: Path) -> None:
    _portal(iris_home).set_alias("iris:1", "production")
    at = _models_page()
    widget(at.radio, "Delete").set_value("the whole model")
    at.run()
    widget(at.selectbox, "@production points at v1").select("remove")
    at.run()
    at = _delete(at, "iris")
    assert_clean(at)
    assert [m.name for m in _portal(iris_home).list_models()] == ["other"]
    at.run()
    assert_clean(at)
    assert at.selectbox(key="picker.model").value == "other"


def test_variant_links_open_the_parent(iris_home: Path) -> None:
    portal = _portal(iris_home)
    parent = portal.get("iris:1")
    portal.registry.add_version(
        "iris", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
        info=describe_model(softmax_classifier()), meta={}, actor="tests", parent="iris:1", method="int8",
    )
    at = _models_page()
    versions = next(d.value for d in at.dataframe if "Variants" in d.value.columns)
    assert versions.set_index("Version").loc[3, "Parent"] == "iris:1"
    assert versions.set_index("Version").loc[1, "Variants"] == "iris:3"
    button(at, "Open iris:1").click()
    at.run()
    assert at.selectbox(key="picker.version.iris").value == "v1"
