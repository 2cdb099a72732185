"""Every page renders, on an empty store and on the demo store."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_fixtures import (  # noqa: F401  (fixtures)
    DEMO_NAMES,
    assert_clean,
    demo_home,
    demo_store,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
)

PAGES = ["app_pages/home.py", "app_pages/upload.py", "app_pages/models.py", "app_pages/predict.py"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_an_empty_store(empty_home: Path, page: str) -> None:
    at = new_app(page)
    assert_clean(at)
    assert not at.error


def test_home_empty_state_says_exactly_what_to_do(empty_home: Path) -> None:
    at = new_app()
    (message,) = texts(at.info)
    assert "Drag an `.onnx`, `.pt2`, TorchScript or `.skops` file onto **Upload**" in message
    assert "or load the demo models" in message
    assert [b.label for b in at.button] == ["Load demo models"]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_the_demo_models(demo_home: Path, page: str) -> None:
    at = new_app(page)
    assert_clean(at)
    assert not at.error


def test_home_counts_the_demo_models(demo_home: Path) -> None:
    at = new_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Models"] == "4" and metrics["Versions"] == "4"
    latest = at.dataframe[0].value
    assert set(latest["Version"]) == {f"{n}:1" for n in DEMO_NAMES}


def test_sidebar_picker_is_shared_across_pages(demo_home: Path) -> None:
    at = select_model(new_app("app_pages/models.py"), "wine")
    assert at.header[0].value == "wine"
    at.switch_page("app_pages/predict.py")
    at.run()
    assert at.title[0].value == "Predict with wine:1"


@pytest.mark.parametrize("name", sorted(DEMO_NAMES))
def test_every_demo_model_renders_on_models_and_predict(demo_home: Path, name: str) -> None:
    at = select_model(new_app("app_pages/models.py"), name)
    assert_clean(at)
    assert at.header[0].value == name
    assert elements_of_type(at, "download_button")
    at.switch_page("app_pages/predict.py")
    at.run()
    assert_clean(at)
    assert not at.error


# -- tabs stay where the action happened (issue 14, item 10) ------------------------------
def open_tab(at, key: str) -> str:
    """Label of the tab the server tells the browser to show, of the tabs keyed ``key``."""
    block = at.get_by_key(key)
    labels = [tab.label for tab in block.children.values()]
    return labels[block.proto.tab_container.default_tab_index]


@pytest.fixture
def two_versions(empty_home: Path) -> Path:
    """``iris`` with two versions and ``other`` with one: a version can be deleted, an alias pointed."""
    from tiny import add_model, linear_regressor, softmax_classifier

    from portal import Portal

    portal = Portal.open(empty_home)
    try:
        add_model(portal, softmax_classifier(), "iris", task="classification")
        add_model(portal, softmax_classifier(seed=4), "iris", task="classification")
        add_model(portal, linear_regressor(), "other", task="regression")
    finally:
        portal.close()
    return empty_home


def _models_on_tab(tab: str):
    from portal.ui import keys

    at = select_model(new_app("app_pages/models.py"), "iris")
    at.session_state[keys.MODELS_TAB] = tab  # what a click on the tab sends
    return at.run()


def test_point_alias_keeps_the_aliases_tab_open(two_versions: Path) -> None:
    at = _models_on_tab("Aliases")
    assert open_tab(at, "models.tab") == "Aliases"
    at.text_input(key="alias.name.iris").set_value("production")
    at.selectbox(key="alias.version.iris").select(1)
    next(b for b in at.button if b.label == "Point alias").click()
    at.run()
    assert_clean(at)
    assert any("production" in t for t in texts(at.success))  # the flash above the tabs ...
    assert open_tab(at, "models.tab") == "Aliases"  # ... does not reopen the first tab


@pytest.mark.parametrize(("tab", "after"), [("Delete", "Delete"), ("Versions (2)", "Versions (1)")])
def test_a_tab_whose_label_counts_versions_stays_open_when_the_count_changes(two_versions: Path, tab: str,
                                                                             after: str) -> None:
    at = _models_on_tab(tab)
    assert open_tab(at, "models.tab") == tab
    at.checkbox(key="del.ok.iris:2").check()
    at.run()
    next(b for b in at.button if b.label == "Delete iris:2").click()
    at.run()
    assert_clean(at)
    assert [t.label for t in at.tabs][1] == "Versions (1)"
    assert open_tab(at, "models.tab") == after


def test_another_model_keeps_the_open_tab(two_versions: Path) -> None:
    at = _models_on_tab("Aliases")
    at = select_model(at, "other")
    assert at.header[0].value == "other"
    assert open_tab(at, "models.tab") == "Aliases"


# -- uploads belong to the model they were dropped for (issue 14, item 11) ------------------
CSV = ("rows.csv", b"f0,f1,f2,f3\n1,2,3,4\n5,6,7,8\n", "text/csv")


@pytest.mark.parametrize(("page", "key"), [
    ("app_pages/compare.py", "compare.data"),
    ("app_pages/compare.py", "compare.calibration"),
    ("app_pages/explain.py", "explain.rows_file"),
    ("app_pages/explain.py", "explain.background_file"),
])
def test_files_uploaded_for_one_model_are_gone_when_another_is_picked(two_versions: Path, page: str,
                                                                       key: str) -> None:
    from portal.ui import keys

    at = select_model(new_app(page), "iris")
    at.file_uploader(key=keys.per_model(key, "iris")).set_value(CSV)
    at.run()
    assert [f.name for f in _files(at.file_uploader(key=keys.per_model(key, "iris")).value)] == ["rows.csv"]
    at = select_model(at, "other")
    assert_clean(at)
    uploaders = {u.key for u in at.file_uploader}
    assert keys.per_model(key, "other") in uploaders and keys.per_model(key, "iris") not in uploaders
    assert not _files(at.file_uploader(key=keys.per_model(key, "other")).value)


def _files(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
