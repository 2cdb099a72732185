"""Builders of tiny real models and hostile files for ingest tests.

Every builder writes one file (or archive) into the given path and returns that
path. Torch and scikit-learn are imported inside the builders that need them.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
OPSET = 17


def _model(nodes: list[onnx.NodeProto], inputs: list[Any], outputs: list[Any], inits: list[Any], **kw: Any) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=kw.pop("opsets", [helper.make_opsetid("", OPSET)]), **kw)
    model.ir_version = IR_VERSION  # helper.make_model stamps onnx's newest IR, newer than onnxruntime's
    return model


def onnx_mlp(n_features: int = 4, hidden: int = 8, n_outputs: int = 3) -> onnx.ModelProto:
    """A 2-layer float32 MLP with a symbolic batch dimension: x[batch, n] -> y[batch, k]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((n_features, hidden)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((hidden, n_outputs)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_outputs])
    return _model(nodes, [x], [y], inits)


def write_onnx_mlp(path: Path) -> Path:
    onnx.save(onnx_mlp(), str(path))
    return path


def write_bundle(path: Path) -> Path:
    """A .zip bundle: ``model.onnx`` plus its weights in ``weights.bin`` (external data)."""
    model = onnx_mlp()
    staging = path.parent / (path.stem + "-staging")
    staging.mkdir()
    onnx.save_model(model, str(staging / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("model.onnx", "weights.bin"):
            archive.write(staging / name, name)
    return path


def _external_model(location: str) -> onnx.ModelProto:
    model = onnx_mlp()
    tensor = model.graph.initializer[0]
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        tensor.external_data.add(key=key, value=value)
    return model


def write_bundle_with_location(path: Path, location: str) -> Path:
    """A bundle whose external data ``location`` is hostile (``../x``, ``/etc/passwd``...)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.onnx", _external_model(location).SerializeToString())
        archive.writestr("weights.bin", b"\0" * 4096)
    return path


def write_bundle_with_symlink(path: Path, target: str = "/etc/passwd") -> Path:
    """A bundle whose data file entry is a symbolic link to ``target``."""
    link = zipfile.ZipInfo("weights.bin")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.onnx", _external_model("weights.bin").SerializeToString())
        archive.writestr(link, target)
    return path


def write_bundle_with_entry(path: Path, entry: str) -> Path:
    """A bundle holding a valid model plus one extra entry named ``entry`` (``../x``, ``/abs``...)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.onnx", onnx_mlp().SerializeToString())
        archive.writestr(zipfile.ZipInfo(entry), b"data")
    return path


def write_onnx_external_bare(path: Path) -> Path:
    """A bare .onnx that references an external data file next to it."""
    onnx.save(_external_model("weights.bin"), str(path))
    (path.parent / "weights.bin").write_bytes(b"\0" * 4096)
    return path


def write_unknown_domain(path: Path, domain: str = "evil.domain") -> Path:
    """An ONNX model calling operator ``Backdoor`` from ``domain``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    node = helper.make_node("Backdoor", ["x"], ["y"], domain=domain)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(domain, 1)]
    onnx.save(_model([node], [x], [y], [], opsets=opsets), str(path))
    return path


def write_ir_version(path: Path, ir_version: int) -> Path:
    """The MLP stamped with ``ir_version``."""
    model = onnx_mlp()
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return path


def write_constant_of_shape_bomb(path: Path, gib: int = 16) -> Path:
    """A valid model that asks for a ``gib`` GiB float tensor when it runs."""
    shape = numpy_helper.from_array(np.array([gib, 256, 1024, 1024], dtype=np.int64), "shape")
    one = numpy_helper.from_array(np.array([1.0], dtype=np.float32))
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    onnx.save(_model(nodes, [x], [y], [shape]), str(path))
    return path


def write_endless_loop(path: Path) -> Path:
    """A valid model whose Loop runs 10**15 iterations: only a CPU or time limit stops it."""
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "v_in"], ["v_out"])]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1])],
    )
    inits = [numpy_helper.from_array(np.array(10**15, dtype=np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "cond")]
    loop = helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    onnx.save(_model([loop], [x], [y], inits), str(path))
    return path


def write_truncated_onnx(path: Path) -> Path:
    data = onnx_mlp().SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_text(path: Path) -> Path:
    path.write_text("This is not a model.\nJust some notes about a model.\n")
    return path


def write_random_bytes(path: Path, size: int = 4096) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


class _Payload:
    """Pickles to a call of ``os.system(command)``: what an attacker uploads."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def pickle_payload(canary: Path, protocol: int) -> bytes:
    """Pickle bytes that create ``canary`` when unpickled."""
    return pickle.dumps(_Payload(f"touch {canary}"), protocol=protocol)


def write_pickle_payload(path: Path, canary: Path, protocol: int = 4) -> Path:
    path.write_bytes(pickle_payload(canary, protocol))
    return path


def write_zip_bomb(path: Path, megabytes: int = 64) -> Path:
    """A zip whose one entry inflates ``megabytes`` MiB of zeros from a few KiB (ratio ~1000:1)."""
    chunk = b"\0" * (1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            archive.open("archive/data/0", "w") as entry:
        for _ in range(megabytes):
            entry.write(chunk)
    return path


# -- PyTorch -------------------------------------------------------------------

def _torch_modules() -> tuple[Any, Any]:
    import torch

    class TinyCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return TinyCNN().eval(), mlp.eval()


def torch_cnn() -> Any:
    """A tiny CNN taking [batch, 3, 8, 8] and returning [batch, 5]."""
    return _torch_modules()[0]


def torch_mlp() -> Any:
    """A tiny MLP taking [batch, 4] and returning [batch, 3]."""
    return _torch_modules()[1]


def write_torchscript(path: Path, module: Any) -> Path:
    """``torch.jit.script`` archive: it records no example input, so its shape is unknown."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def write_pt2(path: Path, module: Any, example: Any) -> Path:
    import torch

    torch.export.save(torch.export.export(module, (example,)), str(path))
    return path


def write_torch_save(path: Path, module: Any) -> Path:
    """A plain ``torch.save(model)`` zip: a pickle of the whole module."""
    import torch

    torch.save(module, str(path))
    return path


def write_pt2_with_payload(path: Path, source_pt2: Path, canary: Path) -> Path:
    """A .pt2 whose pickled sample inputs are replaced by an ``os.system`` payload."""
    payload = pickle_payload(canary, protocol=2)
    with zipfile.ZipFile(source_pt2) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            hostile = info.filename.endswith("sample_inputs/model.pt")
            out.writestr(info, payload if hostile else src.read(info.filename))
    return path


# -- scikit-learn ----------------------------------------------------------------

def iris_frame(with_color: bool = False) -> tuple[Any, Any]:
    """Iris features as a DataFrame (optionally with a string ``color`` column) and labels."""
    from sklearn.datasets import load_iris

    frame, target = load_iris(return_X_y=True, as_frame=True)
    if with_color:
        colors = np.array(["red", "green", "blue"])[target.to_numpy()]
        colors[::7] = "red"
        frame = frame.assign(color=colors)
    return frame, target


def numeric_pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = iris_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame.to_numpy(), target)


def categorical_pipeline() -> Any:
    """Scaler on the numeric columns, OneHotEncoder on ``color``, then a small random forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, target = iris_frame(with_color=True)
    numeric = [c for c in frame.columns if c != "color"]
    pre = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"])])
    labels = np.array(["setosa", "versicolor", "virginica"])[target.to_numpy()]
    model = Pipeline([("pre", pre), ("clf", RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0))])
    return model.fit(frame, labels)


def double(values: Any) -> Any:
    """A user function: skops must refuse to import it from an upload."""
    return values * 2


def untrusted_pipeline() -> Any:
    """A pipeline whose FunctionTransformer calls :func:`double`, a type skops does not trust."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame, target = iris_frame()
    return make_pipeline(FunctionTransformer(double), LinearRegression()).fit(frame.to_numpy(), target)


def write_skops(path: Path, model: Any) -> Path:
    import skops.io as sio

    sio.dump(model, path)
    return path
