"""Issue 14 item 5: a bare model name means its newest UPLOADED version, never a variant.

Registry resolution, the listing's "latest", REST (OIP v2 and the model list), the
sidebar picker's default and the versions table all agree; variants are reached by
their number or an alias, and are shown as variants of their parent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fixtures import make_users
from fastapi.testclient import TestClient
from tiny import add_model, softmax_classifier
from ui_fixtures import empty_home, new_app  # noqa: F401  (fixtures)

from portal import Portal
from portal.api import ApiSettings, create_app
from portal.views import versions_frame


def _variant_of(portal: Portal, ref: str, method: str = "int8-dynamic") -> str:
    parent = portal.get(ref)
    version = portal.registry.add_version(
        parent.name, blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
        info=parent.info, parent=parent.ref, method=method, actor="tests")
    portal.invalidate()
    return version.ref


@pytest.fixture
def portal(tmp_path: Path):
    p = Portal.open(tmp_path / "home")
    yield p
    p.close()


def test_a_variant_does_not_become_latest(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "iris")
    assert _variant_of(portal, "iris:1") == "iris:2"
    assert portal.get("iris").ref == "iris:1" and portal.get("iris@latest").ref == "iris:1"
    assert portal.get_model("iris").latest.ref == "iris:1"
    assert [m.latest.ref for m in portal.list_models()] == ["iris:1"]
    assert portal.get("iris:2").is_variant and not portal.get("iris:1").is_variant


def test_a_new_upload_after_a_variant_is_latest(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "iris")
    _variant_of(portal, "iris:1")
    add_model(portal, softmax_classifier(seed=3), "iris")
    assert portal.get("iris").ref == "iris:3"
    _variant_of(portal, "iris:3", "fp16")
    assert portal.get("iris").ref == "iris:3" and portal.get_model("iris").latest.ref == "iris:3"


def test_an_alias_pointed_at_a_variant_resolves_to_it(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "iris")
    _variant_of(portal, "iris:1")
    portal.set_alias("iris:2", "fast")
    assert portal.get("iris@fast").ref == "iris:2" and portal.get("iris").ref == "iris:1"


def test_with_only_variants_left_the_name_resolves_to_the_newest_variant(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "iris")
    _variant_of(portal, "iris:1")
    _variant_of(portal, "iris:1", "fp16")
    portal.delete("iris:1", force=True)  # the upload is gone; its variants stay, orphaned
    assert portal.get("iris").ref == "iris:3" and portal.get_model("iris").latest.ref == "iris:3"
    add_model(portal, softmax_classifier(seed=4), "iris")  # a new upload takes the name back
    assert portal.get("iris").ref == "iris:4"


def test_versions_table_marks_variants_with_parent_and_method(portal: Portal) -> None:
    add_model(portal, softmax_classifier(), "iris")
    _variant_of(portal, "iris:1")
    _variant_of(portal, "iris:1", "fp16")
    portal.delete("iris:1", force=True)
    add_model(portal, softmax_classifier(seed=4), "iris")
    frame = versions_frame(portal.get_model("iris"))
    assert frame[["Version", "Kind"]].to_dict("records") == [
        {"Version": 4, "Kind": "upload · latest"},
        {"Version": 3, "Kind": "variant: fp16, parent deleted"},
        {"Version": 2, "Kind": "variant: int8-dynamic, parent deleted"},
    ]


def test_rest_defaults_to_the_uploaded_version_after_a_real_variant(portal: Portal) -> None:
    tokens = make_users(portal)
    add_model(portal, softmax_classifier(), "iris")
    assert portal.variants.create("iris:1", "int8-dynamic").ref == "iris:2"
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}
    headers = tokens.headers("analyst")
    with TestClient(create_app(portal, settings=ApiSettings(inline_seconds=0))) as client:
        inferred = client.post("/v2/models/iris/infer", json=body, headers=headers)
        variant = client.post("/v2/models/iris/versions/2/infer", json=body, headers=headers)
        listed = client.get("/api/models", headers=headers)
    assert inferred.status_code == 200, inferred.text
    assert inferred.json()["model_version"] == "1" and variant.json()["model_version"] == "2"
    rows = listed.json()
    rows = rows if isinstance(rows, list) else rows.get("models", rows.get("items", []))
    assert [(m["name"], m["latest"]) for m in rows] == [("iris", 1)]


def test_the_sidebar_picker_defaults_to_the_upload_and_labels_the_variant(empty_home: Path) -> None:  # noqa: F811
    portal = Portal.open(empty_home)
    add_model(portal, softmax_classifier(), "iris")
    portal.variants.create("iris:1", "int8-dynamic")
    portal.set_alias("iris:2", "fast")
    portal.close()
    at = new_app("app_pages/models.py")
    assert not at.exception
    picker = at.selectbox(key="picker.version.iris")
    assert picker.value == "latest" and picker.options == [
        "latest (v1)", "@fast (v2: int8-dynamic of iris:1)", "v2 (int8-dynamic of iris:1)", "v1"]
    shown = [d.value for d in at.dataframe if {"Kind", "Parent"} <= set(d.value.columns)]
    assert shown and shown[0][["Version", "Kind", "Parent", "Method"]].to_dict("records") == [
        {"Version": 2, "Kind": "variant: int8-dynamic of iris:1", "Parent": "iris:1", "Method": "int8-dynamic"},
        {"Version": 1, "Kind": "upload · latest", "Parent": "", "Method": ""},
    ]
