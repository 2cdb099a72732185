"""A corpus of hostile and broken inputs, built by code, for every front door of the portal.

Each :class:`Case` has a stable ``id``, a builder that writes the input into a
folder (nothing is downloaded), the doors it applies to and the message a user
must see.  ``tests/test_adversarial.py`` runs each case through those doors:

    lib   Portal.register / Portal.predict / Portal.predict_file
    cli   ``portal register`` / ``portal predict`` in a child process
    rest  a real ``portal serve`` (upload, /api/models/{ref}/predict, OIP v2)
    ui    the Streamlit Upload page under AppTest

Payloads that would run code (pickles) run ``touch <folder>/CANARY``: the file
must never appear.  The limits the corpus relies on (upload size, sandbox CPU
time, REST body and batch size) are in :data:`LIMITS`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import factories
import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["CASES", "CANARY", "DOORS", "LIMITS", "Case", "HttpRequest", "canary", "cases_for"]

CANARY = "CANARY"
DOORS = ("lib", "cli", "rest", "ui")
UPLOAD_MB = 2
LIMITS = {
    "PORTAL_MAX_UPLOAD_MB": str(UPLOAD_MB),
    "PORTAL_SANDBOX_CPU_S": "2",
    "PORTAL_SANDBOX_TIMEOUT_S": "60",
    "PORTAL_API_MAX_BODY_MB": "1",
    "PORTAL_API_MAX_BATCH_ROWS": "1000",
}
_UPLOAD_BYTES = UPLOAD_MB * 1024 * 1024
_PICKLE_REFUSAL = "a Python pickle, which can run arbitrary code when loaded and is never opened here"


def canary(folder: Path) -> Path:
    """The file a payload built into ``folder`` would create if it ever ran."""
    return folder / CANARY


@dataclass(frozen=True)
class HttpRequest:
    """A raw REST request; ``{model}`` in the path is the served test model."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"


@dataclass(frozen=True)
class Case:
    """One hostile input and the failure every door must turn it into."""

    id: str
    kind: str  # "upload" | "predict" | "request"
    doors: frozenset[str]
    expect: str  # substring of the message a user sees
    build: Callable[[Path], Path]  # writes the input into the folder, returns its path
    filename: str | None = None  # the file name an upload claims (default: the built file's)
    name: str | None = None  # the model name asked for (uploads)
    model: str = "iris"  # predict / request: the registered model it is sent to
    status: int | None = None  # REST: the exact 4xx expected (None: any 4xx)
    rest_expect: str | None = None  # REST says it differently (a request body, not a file)
    escaped: tuple[str, ...] = ()  # predict: cells that must come back quoted in a CSV download
    request: HttpRequest | None = None
    expensive: bool = False  # runs the sandbox to a limit: library plus one other door only
    xfail: Mapping[str, str] = field(default_factory=dict)  # door -> reason (strict)

    def message_for(self, door: str) -> str:
        return self.rest_expect if door == "rest" and self.rest_expect else self.expect


def cases_for(door: str, kind: str | None = None) -> list[Case]:
    return [c for c in CASES if door in c.doors and (kind is None or c.kind == kind)]


# -- builders: uploads ------------------------------------------------------------------------


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def _via(builder: Callable[[Path], Path], name: str) -> Callable[[Path], Path]:
    """A ``factories.write_*`` builder writing ``name`` in the folder."""
    return lambda folder: builder(folder / name)


def _pickle(name: str, protocol: int) -> Callable[[Path], Path]:
    return lambda folder: factories.write_pickle_payload(folder / name, canary(folder), protocol=protocol)


def _checker_invalid(folder: Path) -> Path:
    """Parses as ONNX, but a node reads a tensor nothing defines."""
    model = factories.onnx_mlp()
    model.graph.node[0].input[0] = "nowhere"
    path = folder / "dangling.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _unknown_domain_in_subgraph(folder: Path) -> Path:
    """An ``If`` whose branches call ``Backdoor`` from an undeclared domain."""
    value = helper.make_tensor_value_info
    branch = helper.make_graph([helper.make_node("Backdoor", ["x"], ["z"], domain="evil.nested")], "b", [],
                               [value("z", TensorProto.FLOAT, [1])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [value("x", TensorProto.FLOAT, [1])], [value("y", TensorProto.FLOAT, [1])],
                              [cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", factories.OPSET)])
    model.ir_version = factories.IR_VERSION
    path = folder / "nested.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _invalid_utf8_name(folder: Path) -> Path:
    """A valid model whose graph name is not UTF-8 (protobuf hands such text back as bytes)."""
    model = factories.onnx_mlp()
    model.graph.name = "GRAPH"
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString().replace(b"GRAPH", b"GR\xffPH"))
    return path


def _undefined_output_type(folder: Path) -> Path:
    """An output declared with element type 0 (UNDEFINED): the checker and shape inference let it pass."""
    model = factories.onnx_mlp()
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.UNDEFINED
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _huge_initializer(folder: Path) -> Path:
    """A float initializer declared as 2**20 x 2**20 (4 TiB) that carries 16 bytes."""
    model = factories.onnx_mlp()
    weights = model.graph.initializer[0]
    weights.ClearField("dims")
    weights.dims.extend([2**20, 2**20])
    weights.raw_data = b"\0" * 16
    path = folder / "huge.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _truncated_bundle(folder: Path) -> Path:
    whole = factories.write_bundle(folder / "whole.zip").read_bytes()
    (folder / "whole.zip").unlink()
    path = folder / "bundle.zip"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    return path


def _bundle_location_through_link(folder: Path) -> Path:
    """A bundle holding ``d`` as a link to ``/etc`` and data at ``d/passwd``."""
    link = zipfile.ZipInfo("d")
    link.external_attr = 0o120777 << 16
    path = folder / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.onnx", factories._external_model("d/passwd").SerializeToString())
        archive.writestr(link, "/etc")
    return path


def _patched_zip(folder: Path, patch: Callable[[bytearray], None]) -> Path:
    """A valid bundle with its bytes patched by ``patch`` (headers zipfile cannot write)."""
    data = bytearray(factories.write_bundle(folder / "whole.zip").read_bytes())
    (folder / "whole.zip").unlink()
    patch(data)
    path = folder / "bundle.zip"
    path.write_bytes(bytes(data))
    return path


def _empty_entry_name(data: bytearray) -> None:
    """Rename ``weights.bin`` to NUL + 10 bytes: zipfile reads that as an entry named ''."""
    for at in range(len(data)):
        if data[at : at + 11] == b"weights.bin":
            data[at] = 0


def _future_zip_version(data: bytearray) -> None:
    """Mark every central-directory entry as needing zip version 6.4 to extract."""
    at = data.find(b"PK\x01\x02")
    while at != -1:
        data[at + 6] = 64
        at = data.find(b"PK\x01\x02", at + 4)


def _torch_save_payload(folder: Path) -> Path:
    """The layout of a ``torch.save`` archive, its ``data.pkl`` a payload."""
    path = folder / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", factories.pickle_payload(canary(folder), protocol=2))
        archive.writestr("archive/version", "3\n")
    return path


def _gzip_pickle(folder: Path) -> Path:
    """``joblib.dump(..., compress=True)``: a gzip-compressed pickle."""
    path = folder / "model.joblib"
    path.write_bytes(gzip.compress(factories.pickle_payload(canary(folder), protocol=4)))
    return path


def _skops_os_system(folder: Path) -> Path:
    """A skops file whose FunctionTransformer calls ``os.system``."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = folder / "model.skops"
    sio.dump(FunctionTransformer(os.system, kw_args={"command": f"touch {canary(folder)}"}), path)
    return path


def _zip_over_the_limit(folder: Path) -> Path:
    """A small zip that inflates to more than the upload limit (ratio under the bomb limit)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = folder / "bundle.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.onnx", factories.onnx_mlp().SerializeToString())
        with archive.open("weights.bin", "w") as entry:
            for _ in range(_UPLOAD_BYTES // 4096 * 2):  # repeats compress ~100:1 with deflate's window
                entry.write(noise)
    return path


def _zip_bomb(folder: Path) -> Path:
    """One entry inflating 1.5 MiB of zeros from ~1.5 KiB: under the size limit, 1000:1."""
    path = folder / "model.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model.onnx", factories.onnx_mlp().SerializeToString())
        archive.writestr("weights.bin", b"\0" * (3 * 512 * 1024))
    return path


def _oversized(folder: Path) -> Path:
    """A valid ONNX model padded (with an unknown protobuf field) to just over the upload limit."""
    data = factories.onnx_mlp().SerializeToString()
    pad = _UPLOAD_BYTES - len(data)  # plus the field's tag and length: a few bytes over the limit
    path = folder / "big.onnx"
    path.write_bytes(data + bytes([0xFA, 0x3E]) + _varint(pad) + b"\0" * pad)  # field 1001, bytes
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _valid_model(folder: Path) -> Path:
    return factories.write_onnx_mlp(folder / "model.onnx")


# -- builders: prediction inputs ----------------------------------------------------------------


def _csv(name: str, text: str) -> Callable[[Path], Path]:
    return _write(name, text.encode())


def _png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """An 8-bit greyscale PNG of zeros, streamed through zlib (a 9000x9000 one is ~80 KiB).

    With ``rows`` only that many rows of pixel data and no end chunk: the header
    alone decides whether Pillow opens it.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    line = b"\0" * (width + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(line) for _ in range(height if rows is None else rows))
    body += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    end = chunk(b"IEND", b"") if rows is None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + end


def _npy_pickle(folder: Path) -> Path:
    """A .npy file holding an object array: loading it means unpickling the payload."""
    path = folder / "input.npy"
    array = np.empty(1, dtype=object)
    array[0] = factories._Payload(f"touch {canary(folder)}")
    np.save(path, array, allow_pickle=True)
    return path


def _rows_csv(rows: int, columns: int = 4) -> str:
    header = ",".join(f"f{i}" for i in range(columns))
    return header + "\n" + "1.0,2.0,3.0,4.0\n" * rows


FORMULAS = ('=HYPERLINK("http://evil.example","x")', "+SUM(1,2)", "-2+3", "@cmd")


def _formula_csv(folder: Path) -> Path:
    path = folder / "formulas.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["num", "cat"])
        writer.writerows([i, cell] for i, cell in enumerate(FORMULAS))
    return path


def _truncated_png(folder: Path) -> Path:
    """A real 64x64 noise PNG cut in the middle of its pixel data."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    path = folder / "scan.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# -- the corpus ----------------------------------------------------------------------------------

# A child process per CLI call and an AppTest run per Upload-page case cost about a second each:
# those doors get a representative subset, the library and REST (cheap) nearly everything.
ALL = frozenset(DOORS)
LIB = frozenset({"lib"})
LIB_REST = frozenset({"lib", "rest"})
NO_UI = frozenset({"lib", "cli", "rest"})
FILES = frozenset({"lib", "cli"})  # prediction files (images, .npy): REST takes JSON/CSV bodies only
NAMED = frozenset({"lib", "rest", "ui"})  # names a file system cannot hold: never a CLI path


def _upload(id: str, build: Callable[[Path], Path], expect: str, doors: frozenset[str] = LIB, **kw: Any) -> Case:
    return Case(id=id, kind="upload", doors=doors, expect=expect, build=build, **kw)


def _predict(id: str, build: Callable[[Path], Path], expect: str, doors: frozenset[str] = LIB_REST, **kw: Any) -> Case:
    return Case(id=id, kind="predict", doors=doors, expect=expect, build=build, **kw)


def _request(id: str, body: bytes, expect: str, status: int, request: HttpRequest) -> Case:
    return Case(id=id, kind="request", doors=frozenset({"rest"}), expect=expect, build=_write("body.bin", body),
                status=status, request=request)


_INFER = HttpRequest("POST", "/v2/models/{model}/infer")
_PREDICT = HttpRequest("POST", "/api/models/{model}/predict")


def _tensor(**override: Any) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0], **override}
    return json.dumps({"inputs": [tensor]}).encode()


CASES: list[Case] = [
    # -- broken files ----------------------------------------------------------------------
    _upload("onnx-truncated", _via(factories.write_truncated_onnx, "model.onnx"), "truncated or corrupt", doors=ALL,
            status=415),
    _upload("onnx-random-bytes", _via(factories.write_random_bytes, "model.onnx"), "not a recognised model", status=415),
    _upload("onnx-text", _via(factories.write_text, "model.onnx"), "the file is text", status=415),
    _upload("empty-file", _write("model.onnx", b""), "empty (0 bytes)", doors=ALL, status=422),
    _upload("onnx-dangling-input", _checker_invalid, "the ONNX checker rejected the model", doors=LIB_REST, status=422),
    _upload("onnx-invalid-utf8-name", _invalid_utf8_name, "not valid UTF-8 (in onnx.GraphProto.name)",
            doors=LIB_REST, status=422),
    _upload("onnx-undefined-output-type", _undefined_output_type, "has element type 0, which has no numpy equivalent",
            doors=LIB_REST, status=422),
    _upload("onnx-ir-too-new", lambda f: factories.write_ir_version(f / "model.onnx", 99),
            "IR version 99 is newer than this runtime supports", status=422),
    _upload("zip-truncated", _truncated_bundle, "not a recognised model", status=415),
    # -- external data and zip entries leaving the bundle --------------------------------------
    _upload("bundle-location-dotdot", lambda f: factories.write_bundle_with_location(f / "b.zip", "../x"),
            "external data location '../x'", doors=ALL, status=422),
    _upload("bundle-location-nested-dotdot", lambda f: factories.write_bundle_with_location(f / "b.zip", "a/../../x"),
            "points outside the bundle", status=422),
    _upload("bundle-location-absolute", lambda f: factories.write_bundle_with_location(f / "b.zip", "/etc/passwd"),
            "external data location '/etc/passwd'", status=422),
    _upload("bundle-symlink-entry", _via(factories.write_bundle_with_symlink, "b.zip"), "is a symbolic link",
            doors=LIB_REST, status=422),
    _upload("bundle-location-through-symlink", _bundle_location_through_link, "is a symbolic link", status=422),
    _upload("zip-entry-dotdot", lambda f: factories.write_bundle_with_entry(f / "b.zip", "../evil.bin"),
            "zip entry '../evil.bin' has an absolute path or '..'", doors=ALL, status=422),
    _upload("zip-entry-absolute", lambda f: factories.write_bundle_with_entry(f / "b.zip", "/tmp/evil.bin"),
            "has an absolute path or '..'", status=422),
    _upload("zip-entry-empty-name", lambda f: _patched_zip(f, _empty_entry_name), "has an empty name", status=422),
    _upload("zip-future-version", lambda f: _patched_zip(f, _future_zip_version), "not a recognised model", status=415),
    _upload("zip-entry-backslash", lambda f: factories.write_bundle_with_entry(f / "b.zip", "..\\..\\evil.bin"),
            "has an absolute path or '..'", status=422),
    _upload("bare-onnx-external-data", _via(factories.write_onnx_external_bare, "model.onnx"),
            "upload a .zip bundle", status=422),
    # -- bombs, endless models, unknown operators -------------------------------------------------
    _upload("zip-bomb-ratio", _zip_bomb, "refused as a possible zip bomb", doors=ALL, status=422),
    _upload("zip-expands-over-limit", _zip_over_the_limit, "over the upload limit", doors=LIB_REST, status=413),
    _upload("memory-bomb-constant-of-shape", _via(factories.write_constant_of_shape_bomb, "model.onnx"),
            "the sandbox ran out of memory", doors=frozenset({"lib", "rest"}), status=422, expensive=True),
    _upload("memory-bomb-declared-initializer", _huge_initializer, "the ONNX checker rejected the model",
            doors=frozenset({"lib", "rest"}), status=422, expensive=True),
    _upload("forever-loop", _via(factories.write_endless_loop, "model.onnx"), "CPU-time limit of 2 s",
            doors=frozenset({"lib", "rest"}), status=422, expensive=True),
    _upload("unknown-domain", _via(factories.write_unknown_domain, "model.onnx"), "unknown domain 'evil.domain'",
            doors=ALL, status=415),
    _upload("unknown-domain-in-subgraph", _unknown_domain_in_subgraph, "unknown domain 'evil.nested'",
            status=415),
    # -- code execution: pickles under every suffix ------------------------------------------------
    *[
        _upload(f"pickle-as-{suffix.strip('.') or 'no-suffix'}", _pickle(f"model{suffix}", protocol), _PICKLE_REFUSAL,
                doors={".pkl": ALL, "": NO_UI, ".onnx": LIB_REST, ".bin": LIB_REST}.get(suffix, LIB), status=415)
        for suffix, protocol in ((".pt", 2), (".pth", 3), (".pkl", 4), (".joblib", 5), (".skops", 4), (".onnx", 0),
                                 (".zip", 1), (".bin", 5), ("", 4))
    ],
    _upload("torch-save-payload", _torch_save_payload, "torch.save checkpoint", doors=LIB_REST, status=415),
    _upload("joblib-gzip-payload", _gzip_pickle, "the file is compressed", status=415),
    # -- size and names ------------------------------------------------------------------------------
    _upload("oversized-upload", _oversized, "PORTAL_MAX_UPLOAD_MB", doors=ALL, status=413),
    _upload("filename-traversal", _pickle("payload.bin", 4), _PICKLE_REFUSAL, filename="../../../../tmp/evil.onnx",
            doors=NAMED, status=415),
    _upload("filename-absolute", _via(factories.write_truncated_onnx, "payload.bin"), "truncated or corrupt",
            filename="/etc/cron.d/evil.onnx", doors=LIB_REST, status=415),
    _upload("filename-control-chars", _pickle("payload.bin", 2), _PICKLE_REFUSAL, filename="mo\x00del\r\n\x1b[31m.onnx",
            doors=NAMED, status=415),
    _upload("filename-10k-chars", _pickle("payload.bin", 3), _PICKLE_REFUSAL, filename="a" * 10_000 + ".onnx",
            rest_expect="malformed multipart body: Maximum header size exceeded", doors=NAMED, status=None),
    _upload("filename-CON", _pickle("CON", 4), _PICKLE_REFUSAL, filename="CON", doors=LIB_REST, status=415),
    _upload("filename-only-suffix", _via(factories.write_truncated_onnx, ".onnx"), "truncated or corrupt",
            doors=LIB_REST, status=415),
    _upload("model-name-traversal", _valid_model, "invalid model name '../../etc/passwd'", name="../../etc/passwd",
            doors=frozenset({"lib", "cli", "rest"}), status=400),
    _upload("model-name-10k-chars", _valid_model, "invalid model name", name="m" * 10_000, doors=LIB_REST, status=400),
    # -- predictions ---------------------------------------------------------------------------------
    _predict("predict-too-few-columns", _csv("in.csv", "a,b,c\n1,2,3\n"), "expects 4 columns, got 3", doors=NO_UI,
             status=400),
    _predict("predict-text-in-number-column", _csv("in.csv", _rows_csv(0) + "1.0,abc,3.0,4.0\n"),
             "expects numbers, got 'abc'", status=400),
    _predict("predict-nan", _csv("in.csv", _rows_csv(2) + "1.0,,3.0,4.0\n"), "NaN (a missing value)", status=400),
    _predict("predict-inf", _csv("in.csv", _rows_csv(1) + "1.0,inf,3.0,4.0\n"), "an infinite value", status=400),
    _predict("predict-fraction-for-int", _csv("in.csv", "counts\n1.5\n"), "expects integers (int64)",
             model="counts", status=400),
    _predict("predict-malformed-csv", _csv("in.csv", 'f0,f1\n1,2,3,4,5\n"unclosed\n'), "is not a readable",
             doors=NO_UI, status=400),
    _predict("predict-csv-rows-over-limit", _csv("in.csv", _rows_csv(5000)), "over the limit of 1,000",
             doors=frozenset({"rest"}), status=413),
    _predict("predict-csv-bytes-over-limit", _csv("in.csv", _rows_csv(70_000)), "request body is larger than the limit",
             doors=frozenset({"rest"}), status=413),
    _predict("predict-json-nested-deeply", _write("in.json", b"[" * 100_000 + b"]" * 100_000), "is not valid JSON",
             rest_expect="nested too deeply", status=400),
    _predict("predict-npy-pickle", _npy_pickle, "never unpickled", doors=FILES),
    _predict("predict-png-over-pixel-limit", _write("scan.png", _png(9000, 9000)), "over the limit of 40,000,000",
             model="digits", doors=FILES),
    _predict("predict-png-decompression-bomb", _write("scan.png", _png(20_000, 20_000, rows=64)),
             "decompression bomb", model="digits", doors=frozenset({"lib"})),
    _predict("predict-not-an-image", _write("scan.png", b"this is a text file, not an image\n"),
             "is not an image Pillow can read", model="digits", doors=FILES),
    _predict("predict-truncated-image", _truncated_png, "broken or truncated image", model="digits",
             doors=frozenset({"lib"})),
    _predict("predict-formula-cells", _formula_csv, "", model="mixed", doors=NO_UI, escaped=FORMULAS),
    # -- REST requests --------------------------------------------------------------------------------
    _request("api-malformed-json", b'{"inputs": [', "malformed JSON", 400, _INFER),
    _request("api-json-not-an-object", b'[1, 2, 3]', "must be a JSON object", 400, _INFER),
    _request("api-wrong-content-type", _tensor(), "unsupported Content-Type 'text/plain'", 415,
             HttpRequest("POST", "/v2/models/{model}/infer", content_type="text/plain")),
    _request("api-records-wrong-content-type", b"<xml/>", "unsupported Content-Type 'application/xml'", 415,
             HttpRequest("POST", "/api/models/{model}/predict", content_type="application/xml")),
    _request("api-huge-header", _tensor(), "the request headers take", 431,
             HttpRequest("POST", "/v2/models/{model}/infer", headers={"X-Padding": "p" * 100_000})),
    _request("api-body-over-limit", b" " * (1024 * 1024 + 1), "request body is larger than the limit", 413, _INFER),
    _request("api-oip-wrong-shape", _tensor(shape=[1, 5], data=[1, 2, 3, 4, 5]), "expected shape [-1, 4], got [1, 5]",
             400, _INFER),
    _request("api-oip-shape-data-mismatch", _tensor(shape=[2, 4]), "the shape holds 8 values, got 4", 400, _INFER),
    _request("api-oip-negative-shape", _tensor(shape=[-1, 4]), "'shape' must be a list of non-negative integers",
             400, _INFER),
    _request("api-oip-huge-shape", _tensor(shape=[2**40, 4]), "has too many elements", 400, _INFER),
    _request("api-oip-wrong-datatype", _tensor(datatype="INT64", data=[1, 2, 3, 4]), "expected datatype FP32, got INT64",
             400, _INFER),
    _request("api-oip-strings-for-numbers", _tensor(data=["a", "b", "c", "d"]), "expected FP32 numbers, got strings",
             400, _INFER),
    _request("api-oip-ragged-data", _tensor(data=[[1, 2], [3]]), "nested lists of equal lengths", 400, _INFER),
    _request("api-oip-binary-header-too-long", _tensor(), "Inference-Header-Content-Length is 99999", 400,
             HttpRequest("POST", "/v2/models/{model}/infer", headers={"Inference-Header-Content-Length": "99999"})),
    _request("api-records-nested-value", b'[{"f0": [1, 2]}]', "expected a number, text, true/false or null", 400,
             _PREDICT),
]
