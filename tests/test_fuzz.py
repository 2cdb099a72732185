"""Property-based fuzzing: hostile bytes, models, data and requests never escape as anything but a PortalError.

Profiles (registered in ``conftest.py``): ``ci`` (default: bounded, derandomized)
and ``long`` (``HYPOTHESIS_PROFILE=long``: 20,000 examples per property).
Everything runs in this process: format detection, the ONNX checks the sandbox
child runs (but not onnxruntime, whose native crashes the sandbox exists for),
input coercion, OIP v2 decoding and the REST app under FastAPI's TestClient.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import factories
from api_fixtures import add_model, iris_model, make_users, text_model
from tiny import int_input_model, two_input_model
from portal import Portal
from portal.api import ApiSettings, create_app
from portal.api.tensors import InferRequest, decode_infer_request, oip_datatype
from portal.config import Settings
from portal.errors import InvalidInputError, InvalidModelError, PortalError
from portal.ingest import onnx_check
from portal.ingest.detect import check_zip, parse_onnx, sniff
from portal.ingest.modelinfo import describe_model, numpy_dtype
from portal.serving.signature import Feeds, coerce, tensor_inputs

LONG = os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci"
FORMATS = {"onnx", "zip-onnx", "torchscript", "pt2", "skops", "pickle", "torch-pickle", "zip", "compressed",
           "hdf5", "gguf", "onnx-corrupt", "text", "empty", "unknown"}


def budget(ci_examples: int) -> settings:
    """``ci_examples`` in CI; the loaded profile's count (the long run) otherwise."""
    if LONG:
        return settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    return settings(max_examples=ci_examples, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- format detection --------------------------------------------------------------------------------


def _zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


_MLP = factories.onnx_mlp().SerializeToString()
_BUNDLE = _zip_bytes([("model.onnx", _MLP), ("weights.bin", b"\0" * 256)])
_PREFIXES = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\x80\x04\x95", b"\x80\x02", b"\x08\x07\x12", b"\x1f\x8b",
             b"\x89HDF\r\n\x1a\n", b"GGUF", b"(dp0\n", b"hello"]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` truncated, with bytes flipped, inserted or deleted."""
    data = bytearray(original[: draw(st.integers(0, len(original)))] if draw(st.booleans()) else original)
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(("flip", "insert", "delete")))
        if how == "flip":
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def _zip_of_names(names: list[str]) -> bytes:
    # ZipInfo cuts a name at NUL; writestr fails on what is left empty (mutated bundles cover that)
    return _zip_bytes([(name, b"x" * 8) for name in names if zipfile.ZipInfo(name).filename])


uploads = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda p, b: p + b, st.sampled_from(_PREFIXES), st.binary(max_size=512)),
    mutated(_MLP),
    mutated(_BUNDLE),
    st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6, unique=True).map(_zip_of_names),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@budget(150)
@given(data=uploads)
def test_format_detection_names_a_known_format_or_refuses(scratch: Path, data: bytes) -> None:
    path = scratch / "upload.bin"
    path.write_bytes(data)
    fmt, model = sniff(path)
    assert fmt in FORMATS
    assert (model is not None) == (fmt == "onnx")
    if data.startswith(b"PK"):
        try:
            infos = check_zip(path, settings=Settings(max_upload_bytes=1024 * 1024))
        except PortalError:
            return
        assert all(".." not in Path(i.filename).parts and not i.filename.startswith("/") for i in infos)


# -- ONNX validation (what the sandbox child runs, minus onnxruntime) --------------------------------


_ELEM_TYPES = st.integers(-2, 30)


def _mutate_structure(model: onnx.ModelProto, draw: st.DrawFn) -> None:
    """One structural change a hostile exporter could make."""
    graph = model.graph
    how = draw(st.sampled_from(("elem_type", "dim", "op", "domain", "opset", "ir", "attribute", "init_dims", "name")))
    if how == "elem_type":
        graph.input[0].type.tensor_type.elem_type = draw(_ELEM_TYPES)
    elif how == "dim":
        dim = graph.input[0].type.tensor_type.shape.dim[draw(st.integers(0, 1))]
        dim.dim_value = draw(st.integers(-(2**40), 2**40))
    elif how == "op":
        graph.node[draw(st.integers(0, len(graph.node) - 1))].op_type = draw(st.text(max_size=12))
    elif how == "domain":
        graph.node[0].domain = draw(st.sampled_from(("", "ai.onnx.ml", "com.microsoft", "evil", "ai.onnx.preview")))
    elif how == "opset":
        model.opset_import[0].version = draw(st.integers(-5, 40))
    elif how == "ir":
        model.ir_version = draw(st.integers(-5, 20))
    elif how == "attribute":
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        value = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8),
                               st.lists(st.integers(-10, 10), min_size=1, max_size=4)))
        node.attribute.append(onnx.helper.make_attribute(draw(st.sampled_from(("axis", "alpha", "perm", "x"))), value))
    elif how == "init_dims":
        init = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
        init.dims[draw(st.integers(0, len(init.dims) - 1))] = draw(st.integers(-(2**40), 2**40))
    else:
        graph.node[0].output[0] = draw(st.sampled_from(("", "x", "y", "h1", "w1")))


@st.composite
def onnx_models(draw: st.DrawFn) -> onnx.ModelProto | None:
    if draw(st.booleans()):
        return parse_onnx(draw(mutated(_MLP)))
    model = factories.onnx_mlp()
    for _ in range(draw(st.integers(1, 3))):
        _mutate_structure(model, draw)
    return model


@budget(100)
@given(model=onnx_models())
def test_onnx_checks_raise_only_portal_errors(model: onnx.ModelProto | None) -> None:
    assume(model is not None)
    limits = onnx_check.runtime_limits()
    try:
        onnx_check.fit_ir_version(model, limits)
        onnx_check.check_onnx(model, limits)
        # what the child reports for an accepted model: plain JSON naming every input with a dtype numpy knows
        info = json.loads(json.dumps(describe_model(model, size_bytes=model.ByteSize())))
    except InvalidModelError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        event(f"refused: {type(exc).__name__}")
        return
    event("accepted")
    assert [spec["name"] for spec in info["signature"]["inputs"]] == [v.name for v in model.graph.input]
    for spec in info["signature"]["inputs"]:
        if spec["kind"] == "tensor":
            numpy_dtype(spec["dtype"])


# -- input coercion ------------------------------------------------------------------------------------

SIGNATURES = {
    "matrix": describe_model(iris_model())["signature"],                # x FP32 [N, 4]
    "mixed": describe_model(two_input_model())["signature"],            # num FP32 [N, 1], cat STRING [N, 1]
    "counts": describe_model(int_input_model())["signature"],           # counts INT64 [N, 2]
    "text": describe_model(text_model())["signature"],                  # text STRING [N]
    "fixed": {"inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [1, 3]}], "outputs": []},
    "flags": {"inputs": [{"name": "b", "kind": "tensor", "dtype": "bool", "shape": ["N", 2]}], "outputs": []},
    "image": {"inputs": [{"name": "img", "kind": "tensor", "dtype": "float32", "shape": ["N", 1, 2, 2]}], "outputs": []},
}
FEATURES = {"image": ["p0", "p1", "p2", "p3"], "matrix": ["a", "b", "c", "d"]}
_NAMES = ["x", "num", "cat", "counts", "text", "b", "img", "a", "b", "c", "d", "p0", "p1", "p2", "p3", "extra", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.sampled_from(["1.5", "nan", "inf", "-0", "1e400", "=1+1", "2024-01-01"]),
)
np_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint64, np.bool_, np.float16, "U3", object,
                           "datetime64[s]", np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    elements=None,
)
nested = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=20)
records = st.lists(st.dictionaries(st.sampled_from(_NAMES), scalars, max_size=6), min_size=0, max_size=5)
data_forms = st.one_of(
    st.dictionaries(st.sampled_from(_NAMES), st.one_of(np_arrays, nested, scalars), max_size=4),
    records,
    records.map(lambda r: pd.DataFrame.from_records(r) if r else pd.DataFrame()),
    np_arrays,
    nested,
    st.tuples(scalars, scalars),
)


def _assert_feeds_fit(feeds: Feeds, signature: dict[str, Any]) -> None:
    specs = tensor_inputs(signature)
    assert set(feeds.arrays) == {s["name"] for s in specs}
    for spec in specs:
        arr = feeds.arrays[spec["name"]]
        assert isinstance(arr, np.ndarray) and arr.dtype == numpy_dtype(spec["dtype"])
        shape = spec["shape"]
        assert arr.ndim == len(shape)
        for axis, want in enumerate(shape):
            if isinstance(want, int) and axis > 0:
                assert arr.shape[axis] == want
        assert (arr.shape[0] if arr.ndim else 1) == feeds.rows
        if arr.dtype.kind == "f":
            assert np.isfinite(arr).all()


def _columns(which: str) -> list[str]:
    specs = tensor_inputs(SIGNATURES[which])
    return FEATURES.get(which) or [s["name"] for s in specs]


@st.composite
def near_fits(draw: st.DrawFn, which: str) -> Any:
    """Data shaped like the signature wants (right names, a few rows), values anything."""
    rows = draw(st.integers(0, 4))
    columns = _columns(which)
    if draw(st.booleans()):
        columns = columns + draw(st.lists(st.sampled_from(_NAMES), max_size=2))
    table = {c: draw(st.lists(scalars, min_size=rows, max_size=rows)) for c in columns}
    form = draw(st.sampled_from(("frame", "records", "arrays")))
    if form == "frame":
        return pd.DataFrame(table)
    if form == "records":
        return [{c: table[c][i] for c in columns} for i in range(rows)]
    spec_arrays = {}
    for spec in tensor_inputs(SIGNATURES[which]):
        shape = [rows] + [d if isinstance(d, int) else 2 for d in spec["shape"][1:]]
        spec_arrays[spec["name"]] = draw(hnp.arrays(draw(st.sampled_from([np.float32, np.float64, np.int64, "U4", object,
                                                                          np.bool_])), shape))
    return spec_arrays


@budget(150)
@given(which=st.sampled_from(sorted(SIGNATURES)), data=st.data(), extra=st.sampled_from(["error", "ignore"]))
def test_coercion_gives_fitting_feeds_or_invalid_input(which: str, data: st.DataObject, extra: str) -> None:
    signature = SIGNATURES[which]
    value = data.draw(st.one_of(data_forms, near_fits(which)), label="data")
    try:
        feeds = coerce(signature, value, feature_names=FEATURES.get(which), extra_columns=extra)
    except InvalidInputError as exc:
        assert str(exc)
        event("refused")
        return
    event("accepted")
    _assert_feeds_fit(feeds, signature)


# -- OIP v2 decoding ----------------------------------------------------------------------------------

_INFER_INPUTS = tensor_inputs(SIGNATURES["matrix"]) + [
    {"name": "s", "kind": "tensor", "dtype": "string", "shape": ["N"]},
    {"name": "i", "kind": "tensor", "dtype": "int32", "shape": ["N", 2]},
    {"name": "f", "kind": "tensor", "dtype": "bool", "shape": None},
]
_DATATYPES = ["FP32", "FP64", "FP16", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "BF16", "fp32", "", None, 7]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
shapes = st.one_of(st.lists(st.integers(-2, 5), max_size=4), st.lists(st.integers(0, 2**62), max_size=3), json_values)


_ELEMENTS = {
    "FP32": st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False), st.integers(-100, 100)),
    "INT32": st.integers(-(2**40), 2**40),
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=5),
}


@st.composite
def well_formed(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """A tensor for ``spec`` with the right datatype and a consistent shape, as JSON or binary."""
    datatype = oip_datatype(spec["dtype"])
    dims = spec["shape"] if spec["shape"] is not None else ["N", 2]
    shape = [draw(st.integers(0, 3))] + [d if isinstance(d, int) else 2 for d in dims[1:]]
    values = draw(st.lists(_ELEMENTS[datatype], min_size=math.prod(shape), max_size=math.prod(shape)))
    return {"name": spec["name"], "datatype": datatype, "shape": shape, "data": values}


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 2)):
        tensor = draw(well_formed(draw(st.sampled_from(_INFER_INPUTS))))
        if draw(st.integers(0, 2)) == 0:  # break one field
            key = draw(st.sampled_from(["name", "datatype", "shape", "data"]))
            tensor[key] = draw(st.one_of(json_values, shapes))
        return tensor
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["x", "s", "i", "f", "nope", 3])),
        "datatype": draw(st.sampled_from(_DATATYPES)),
        "shape": draw(shapes),
    }
    if draw(st.booleans()):
        tensor["data"] = draw(st.one_of(nested, json_values))
    if draw(st.integers(0, 3)) == 0:
        tensor["parameters"] = draw(st.one_of(st.dictionaries(st.sampled_from(["binary_data_size", "x"]),
                                                              st.one_of(st.integers(-5, 64), json_values), max_size=2),
                                              json_values))
    return tensor


def _binary(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bytes]:
    """Move the data of numeric tensors into Triton's binary section."""
    blobs = []
    for item in items:
        datatype = item.get("datatype")
        dtype = {"FP32": "<f4", "INT32": "<i4", "BOOL": "u1"}.get(datatype) if isinstance(datatype, str) else None
        if dtype and isinstance(item.get("data"), list):
            try:
                blob = np.asarray(item["data"], dtype=dtype).tobytes()
            except (ValueError, TypeError, OverflowError):
                continue
            del item["data"]
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
    return items, b"".join(blobs)


@st.composite
def infer_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    items = draw(st.lists(tensors(), max_size=5))
    binary = b""
    if draw(st.booleans()):
        items, binary = _binary(items)
    doc: Any = {"inputs": items}
    if draw(st.booleans()):
        doc["outputs"] = draw(st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(["y", "z", 1])})),
                                        json_values))
    if draw(st.booleans()):
        doc["id"] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        doc = draw(json_values)
    head = json.dumps(doc).encode()
    if binary:
        return head + binary, draw(st.sampled_from([str(len(head)), str(len(head) + 1), "x"]))
    tail = draw(st.binary(max_size=64))
    header = draw(st.one_of(st.none(), st.just(str(len(head))), st.text(max_size=6)))
    return (head + tail if header is not None else head), header


@budget(150)
@given(body=infer_bodies())
def test_oip_decoding_returns_arrays_or_invalid_input(body: tuple[bytes, str | None]) -> None:
    raw, header = body
    try:
        parsed = decode_infer_request(raw, inputs=_INFER_INPUTS, output_names=["y", "z"], header_length=header)
    except InvalidInputError as exc:
        assert str(exc)
        event("refused")
        return
    event("accepted")
    assert isinstance(parsed, InferRequest)
    specs = {s["name"]: s for s in _INFER_INPUTS}
    assert set(parsed.arrays) == set(specs)
    for name, arr in parsed.arrays.items():
        assert arr.dtype == numpy_dtype(specs[name]["dtype"])
        want = specs[name]["shape"]
        assert want is None or (arr.ndim == len(want) and all(
            a == w for a, w in zip(arr.shape[1:], want[1:]) if isinstance(w, int)))


# -- the REST app in process ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from fastapi.testclient import TestClient

    portal = Portal.open(tmp_path_factory.mktemp("fuzz-api") / "home")
    tokens = make_users(portal)
    add_model(portal, "iris", iris_model(), owner="admin")
    add_model(portal, "mixed", two_input_model(), owner="admin")
    with TestClient(create_app(portal, settings=ApiSettings(inline_seconds=0)), raise_server_exceptions=False) as test:
        test.headers.update(tokens.headers("admin"))
        yield test
    portal.close()


requests = st.one_of(
    st.tuples(st.just("POST"), st.sampled_from(["/v2/models/iris/infer", "/v2/models/mixed/versions/1/infer"]),
              infer_bodies().map(lambda b: b[0])),
    st.tuples(st.just("POST"), st.sampled_from(["/api/models/iris/predict", "/api/models/mixed/predict"]),
              st.one_of(records.map(lambda r: json.dumps(r, allow_nan=True).encode()), json_values.map(
                  lambda v: json.dumps(v).encode()), st.binary(max_size=64))),
    st.tuples(st.just("PATCH"), st.just("/api/models/iris"), json_values.map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("PATCH"), st.just("/api/models/iris/versions/1"), json_values.map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("PUT"), st.sampled_from(["/api/models/iris/aliases/prod", "/api/models/iris/aliases/9"]),
              json_values.map(lambda v: json.dumps(v).encode())),
)


@budget(100)
@given(request=requests, content_type=st.sampled_from(["application/json", "text/csv", "application/octet-stream", ""]))
def test_rest_answers_4xx_never_5xx(client: Any, request: tuple[str, str, bytes], content_type: str) -> None:
    method, path, body = request
    response = client.request(method, path, content=body, headers={"Content-Type": content_type} if content_type else {})
    assert response.status_code < 500, f"{method} {path} {body[:200]!r}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert list(response.json()) == ["error"]
