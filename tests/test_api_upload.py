"""Uploading models over HTTP: multipart streamed to disk, the real ingest sandbox, size limits.

The server's upload limit is 1 MiB; a bigger upload is refused with 413 from its
Content-Length alone, or while a chunked body streams in.
"""

from __future__ import annotations

import io
import socket
import zipfile

import httpx
import onnx
import pytest

from api_fixtures import add_model, iris_model, make_users, serve, text_model
from portal import Portal


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("upload-home")
    portal = Portal.open(home)
    tokens = make_users(portal)
    add_model(portal, "admins-model", iris_model(), owner="admin")
    for server in serve(home, env={"PORTAL_MAX_UPLOAD_MB": "1"}):
        yield portal, tokens, server
    portal.close()


def _upload(server, tokens, who, data: bytes, filename: str = "model.onnx", **fields: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/models", files={"file": (filename, data, "application/octet-stream")},
                      data=fields, headers=tokens.headers(who), timeout=120)


def test_analyst_uploads_an_onnx_model_and_owns_it(world):
    portal, tokens, server = world
    response = _upload(server, tokens, "analyst", iris_model().SerializeToString(), "iris.onnx",
                       name="uploaded", description="from the API", tags="a,b", task="classification",
                       class_labels="setosa,versicolor,virginica")
    assert response.status_code == 201, response.text
    version = response.json()
    assert (version["ref"], version["owner"], version["created_by"]) == ("uploaded:1", "analyst", "analyst")
    assert version["class_labels"] == ["setosa", "versicolor", "virginica"] and version["tags"] == ["a", "b"]
    infer = httpx.post(f"{server.url}/v2/models/uploaded/infer", headers=tokens.headers("viewer"),
                       json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    assert infer.status_code == 200
    events = portal.registry.audit_log(target="uploaded")
    assert [(e.actor, e.action) for e in events] == [("analyst", "version.create")]
    assert list((portal.home / "tmp").iterdir()) == []  # the streamed upload is cleaned up


def test_name_defaults_to_the_file_name_and_versions_add_up(world):
    _, tokens, server = world
    first = _upload(server, tokens, "analyst", text_model().SerializeToString(), "my text.model.onnx")
    assert first.status_code == 201, first.text
    assert first.json()["ref"] == "my-text:1"
    again = _upload(server, tokens, "analyst", text_model().SerializeToString(), "x.onnx", name="my-text")
    assert again.json()["ref"] == "my-text:2"


def test_analyst_cannot_add_versions_to_someone_elses_model(world):
    _, tokens, server = world
    response = _upload(server, tokens, "analyst", iris_model().SerializeToString(), name="admins-model")
    assert response.status_code == 403 and "belongs to 'admin'" in response.json()["error"]


def test_viewer_cannot_upload(world):
    _, tokens, server = world
    assert _upload(server, tokens, "viewer", iris_model().SerializeToString()).status_code == 403


@pytest.mark.parametrize(("data", "filename", "status"), [
    (b"just some text, not a model", "notes.onnx", 415),
    (b"\x80\x04\x95" + b"\x00" * 64, "model.pkl", 415),
    (b"", "empty.onnx", 422),
], ids=["text", "pickle", "empty"])
def test_files_that_are_not_models_are_refused(world, data, filename, status):
    _, tokens, server = world
    response = _upload(server, tokens, "analyst", data, filename)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and "Traceback" not in response.text


def test_zip_bomb_is_refused(world):
    _, tokens, server = world
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.onnx", b"\x00" * (200 * 1024 * 1024))
    response = _upload(server, tokens, "analyst", buffer.getvalue(), "bomb.zip")
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "../etc"}, "invalid model name"),
    ({"colour": "red"}, "unknown form field(s) colour"),
    ({"input_shape": "a,b"}, "invalid input_shape"),
])
def test_bad_form_fields_are_400(world, fields, message):
    _, tokens, server = world
    response = _upload(server, tokens, "analyst", iris_model().SerializeToString(), **fields)
    assert response.status_code == 400 and message in response.json()["error"]


def test_not_multipart_is_400(world):
    _, tokens, server = world
    response = httpx.post(f"{server.url}/api/models", content=iris_model().SerializeToString(),
                          headers={**tokens.headers("analyst"), "Content-Type": "application/octet-stream"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]


def test_upload_over_the_limit_is_413_from_content_length(world):
    _, tokens, server = world
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     + f"Authorization: Bearer {tokens.by_role['analyst']}\r\n".encode()
                     + b"Content-Length: 5000000000\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the connection
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and '"error"' in reply


def test_chunked_upload_over_the_limit_is_413_while_streaming(world):
    portal, tokens, server = world

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n'
        for _ in range(3 * 16):
            yield b"\x08" * 65536
        yield b"\r\n--b--\r\n"

    response = httpx.post(f"{server.url}/api/models", content=body(), timeout=60,
                          headers={**tokens.headers("analyst"), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text
    assert list((portal.home / "tmp").iterdir()) == []


def test_file_part_over_the_limit_inside_the_body_allowance_is_413(world):
    _, tokens, server = world
    data = onnx.helper.make_tensor("pad", onnx.TensorProto.UINT8, [1024 * 1024 + 10], b"\x00" * (1024 * 1024 + 10), raw=True)
    response = _upload(server, tokens, "analyst", data.SerializeToString(), "padded.onnx")
    assert response.status_code == 413, response.text
