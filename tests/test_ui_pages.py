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
