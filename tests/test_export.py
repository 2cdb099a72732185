"""Triton / KServe export, parsed back with Triton's own ModelConfig protobuf."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tiny import add_model, softmax_classifier, two_input_model

import tritonclient

from portal import InvalidInputError
from portal.storage.export import export_repository, export_zip


def _model_config_module():
    # tritonclient ships Triton's ModelConfig message in its grpc package; load just that module
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MC = _model_config_module()


def _parse(path: Path):
    return text_format.Parse(path.read_text(), MC.ModelConfig())


def test_triton_repository_layout_and_config(portal, tmp_path):
    add_model(portal, softmax_classifier(), "cls", task="classification")
    written = export_repository(portal, "cls", tmp_path / "repo")
    assert sorted(p.relative_to(tmp_path / "repo").as_posix() for p in written) == ["cls/1/model.onnx", "cls/config.pbtxt"]
    config = _parse(tmp_path / "repo/cls/config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("cls", "onnxruntime_onnx", 64)
    assert [(i.name, MC.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [("x", "TYPE_FP32", [4])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("probs", [3])]
    assert config.HasField("dynamic_batching") and list(config.version_policy.specific.versions) == [1]
    session = ort.InferenceSession(str(tmp_path / "repo/cls/1/model.onnx"))
    assert session.run(None, {"x": np.ones((2, 4), np.float32)})[0].shape == (2, 3)


def test_strings_map_to_type_string(portal, tmp_path):
    add_model(portal, two_input_model(), "mixed")
    export_repository(portal, "mixed", tmp_path)
    config = _parse(tmp_path / "mixed/config.pbtxt")
    assert {i.name: MC.DataType.Name(i.data_type) for i in config.input} == {"num": "TYPE_FP32", "cat": "TYPE_STRING"}


def test_fixed_batch_model_has_no_batching(portal, tmp_path):
    add_model(portal, softmax_classifier(batch=1), "fixed")
    export_repository(portal, "fixed", tmp_path)
    config = _parse(tmp_path / "fixed/config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 4]
    assert not config.HasField("dynamic_batching")


def test_kserve_manifest_and_zip(portal, tmp_path):
    add_model(portal, softmax_classifier(), "cls")
    export_repository(portal, "cls", tmp_path, fmt="kserve", storage_uri="s3://bucket/repo")
    manifest = (tmp_path / "cls/inferenceservice.yaml").read_text()
    assert "kind: InferenceService" in manifest and 'storageUri: "s3://bucket/repo"' in manifest
    assert "protocolVersion: v2" in manifest
    names = zipfile.ZipFile(io.BytesIO(export_zip(portal, "cls"))).namelist()
    assert sorted(names) == ["cls/1/model.onnx", "cls/config.pbtxt"]


def test_zipmap_output_is_refused_with_advice(portal, tmp_path):

    version = add_model(portal, softmax_classifier(), "cls")
    info = dict(version.info)
    info["signature"] = {"inputs": version.signature["inputs"],
                         "outputs": [{"name": "scores", "kind": "sequence_map", "key_dtype": "int64", "value_dtype": "float32"}]}
    portal.registry.add_version("zm", blob_sha=version.blob_sha, size_bytes=version.size_bytes, source_format="onnx", info=info)
    portal.invalidate()
    with pytest.raises(InvalidInputError, match="zipmap=False"):
        export_repository(portal, "zm", tmp_path)
    assert list(tmp_path.iterdir()) == [] or all(p.name == "home" for p in tmp_path.iterdir())


def test_cli_export(portal, tmp_path):
    add_model(portal, softmax_classifier(), "cls")
    env = dict(os.environ, PORTAL_HOME=str(portal.home))
    out = subprocess.run([sys.executable, "-m", "portal.cli", "export", "cls:1", str(tmp_path / "r"), "--format", "kserve"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r/cls/inferenceservice.yaml").is_file()
    again = subprocess.run([sys.executable, "-m", "portal.cli", "export", "cls:1", str(tmp_path / "r")],
                           env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already exists" in again.stderr
