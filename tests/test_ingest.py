"""Ingest: real uploads through the real sandboxed child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import factories
import numpy as np
import onnxruntime as ort
import pytest

from portal.config import MIB, Settings
from portal.errors import (
    InputShapeRequiredError,
    InvalidModelError,
    PayloadTooLargeError,
    SandboxError,
    UnsupportedFormatError,
)
from portal.ingest import IngestReport, detect_format, ingest_file
from portal.ingest.onnx_check import runtime_limits

SETTINGS = Settings()


def _tree(root: Path, skip: Path) -> set[Path]:
    return {p for p in root.rglob("*") if skip not in (p, *p.parents)}


def ingest(src: Path, workdir: Path, **kwargs: Any) -> IngestReport:
    return ingest_file(src, workdir, settings=kwargs.pop("settings", SETTINGS), **kwargs)


def assert_refused(src: Path, exc_type: type[Exception], fragment: str, **kwargs: Any) -> str:
    """Ingest must raise ``exc_type`` mentioning ``fragment``, leave workdir empty and create nothing else."""
    root = src.parent
    workdir = root / "work"
    before = _tree(root, workdir)
    with pytest.raises(exc_type) as info:
        ingest(src, workdir, **kwargs)
    assert fragment in str(info.value)
    assert not workdir.exists() or list(workdir.iterdir()) == []
    assert _tree(root, workdir) == before
    return str(info.value)


def session_for(report: IngestReport) -> ort.InferenceSession:
    return ort.InferenceSession(str(report.model_path), providers=["CPUExecutionProvider"])


# -- fixtures: real models built once per module ----------------------------------------


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("torch")
    cnn, mlp = factories.torch_cnn(), factories.torch_mlp()
    return {
        "cnn": cnn,
        "mlp": mlp,
        "torchscript": factories.write_torchscript(root / "cnn.pt", cnn),
        "pt2_cnn": factories.write_pt2(root / "cnn.pt2", cnn, torch.randn(1, 3, 8, 8)),
        "pt2_mlp": factories.write_pt2(root / "mlp.pt2", mlp, torch.randn(1, 4)),
        "torch_save": factories.write_torch_save(root / "whole.pt", mlp),
    }


def _copy(src: Path, dest_dir: Path, name: str) -> Path:
    dest = dest_dir / name
    dest.write_bytes(src.read_bytes())
    return dest


# -- ONNX ---------------------------------------------------------------------------------


def test_onnx_mlp_ingests_with_its_signature(tmp_path: Path) -> None:
    report = ingest(factories.write_onnx_mlp(tmp_path / "mlp.onnx"), tmp_path / "work")
    assert report.source_format == "onnx"
    assert report.model_path == tmp_path / "work" / "model.onnx"
    assert report.info["signature"] == {
        "inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": ["batch", 4]}],
        "outputs": [{"name": "y", "kind": "tensor", "dtype": "float32", "shape": ["batch", 3]}],
    }
    assert report.info["size_bytes"] == report.model_path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["model.onnx"]


def test_progress_reports_each_stage_in_order(tmp_path: Path) -> None:
    stages: list[str] = []
    ingest(factories.write_onnx_mlp(tmp_path / "mlp.onnx"), tmp_path / "work", progress=stages.append)
    assert stages == ["validated", "converted", "loaded"]


def test_onnx_bundle_with_external_data_is_inlined(tmp_path: Path) -> None:
    report = ingest(factories.write_bundle(tmp_path / "bundle.zip"), tmp_path / "work")
    assert report.source_format == "onnx-zip"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["model.onnx"]
    x = np.ones((2, 4), dtype=np.float32)
    expected = ort.InferenceSession(factories.onnx_mlp().SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(session_for(report).run(None, {"x": x})[0], expected[0], rtol=1e-6)


def test_detect_format_uses_content_not_file_name(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    found = {
        "onnx": detect_format(factories.write_onnx_mlp(tmp_path / "model.pkl")),
        "zip-onnx": detect_format(factories.write_bundle(tmp_path / "bundle.pt")),
        "torchscript": detect_format(_copy(torch_files["torchscript"], tmp_path, "a.onnx")),
        "pt2": detect_format(_copy(torch_files["pt2_mlp"], tmp_path, "b.skops")),
        "torch-pickle": detect_format(_copy(torch_files["torch_save"], tmp_path, "c.pt2")),
        "pickle": detect_format(factories.write_pickle_payload(tmp_path / "d.onnx", tmp_path / "never", protocol=0)),
        "text": detect_format(factories.write_text(tmp_path / "e.onnx")),
        "empty": detect_format(_empty(tmp_path / "f.onnx")),
    }
    assert found == {name: name for name in found}


# -- PyTorch --------------------------------------------------------------------------------


def test_torchscript_without_input_shape_asks_for_it(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    src = _copy(torch_files["torchscript"], tmp_path, "cnn.pt")
    message = assert_refused(src, InputShapeRequiredError, "--input-shape")
    assert "Input shape field" in message


def test_torchscript_with_input_shape_converts_with_dynamic_batch(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    import torch

    report = ingest(_copy(torch_files["torchscript"], tmp_path, "cnn.pt"), tmp_path / "work", input_shape=[1, 3, 8, 8])
    assert report.source_format == "torchscript"
    assert report.info["signature"]["inputs"][0]["shape"] == ["batch", 3, 8, 8]
    x = torch.randn(3, 3, 8, 8)
    got = session_for(report).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, torch_files["cnn"](x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_pt2_converts_with_dynamic_batch_from_its_example_inputs(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    import torch

    report = ingest(_copy(torch_files["pt2_cnn"], tmp_path, "cnn.pt2"), tmp_path / "work")
    assert report.source_format == "pt2"
    (spec,) = report.info["signature"]["inputs"]
    assert spec["shape"] == ["batch", 3, 8, 8]
    x = torch.randn(4, 3, 8, 8)
    got = session_for(report).run(None, {spec["name"]: x.numpy()})[0]
    np.testing.assert_allclose(got, torch_files["cnn"](x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_pt2_with_pickled_payload_never_runs_it(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    canary = tmp_path / "canary"
    src = factories.write_pt2_with_payload(tmp_path / "evil.pt2", torch_files["pt2_mlp"], canary)
    assert_refused(src, InvalidModelError, "pickled objects")
    assert not canary.exists()


def test_plain_torch_save_is_refused_as_pickle(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    src = _copy(torch_files["torch_save"], tmp_path, "model.pt")
    assert_refused(src, UnsupportedFormatError, "torch.export.save (.pt2)")


# -- scikit-learn ---------------------------------------------------------------------------


def test_skops_numeric_pipeline_converts_with_one_input(tmp_path: Path) -> None:
    model = factories.numeric_pipeline()
    report = ingest(factories.write_skops(tmp_path / "model.skops", model), tmp_path / "work")
    assert report.source_format == "skops"
    assert [s["name"] for s in report.info["signature"]["inputs"]] == ["input"]
    assert report.suggested == {"task": "classification", "class_labels": ["0", "1", "2"]}
    rows = factories.iris_frame()[0].to_numpy()[::30].astype(np.float32)
    _label, proba = session_for(report).run(None, {"input": rows})
    np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=1e-4, atol=1e-5)


def test_skops_pipeline_with_string_column_gets_one_input_per_column(tmp_path: Path) -> None:
    model = factories.categorical_pipeline()
    report = ingest(factories.write_skops(tmp_path / "model.skops", model), tmp_path / "work")
    inputs = report.info["signature"]["inputs"]
    assert [(s["name"], s["dtype"], s["shape"]) for s in inputs] == [
        (name, "string" if name == "color" else "float32", [None, 1]) for name in model.feature_names_in_
    ]
    assert report.suggested["feature_names"] == list(model.feature_names_in_)
    assert report.suggested["class_labels"] == ["setosa", "versicolor", "virginica"]
    rows = factories.iris_frame(with_color=True)[0].iloc[::25]
    feeds = {c: rows[[c]].to_numpy().astype(object if c == "color" else np.float32) for c in rows.columns}
    label, proba = session_for(report).run(None, feeds)
    np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=1e-5, atol=1e-6)
    assert list(label) == list(model.predict(rows))


def test_skops_needing_an_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    src = factories.write_skops(tmp_path / "model.skops", factories.untrusted_pipeline())
    assert_refused(src, UnsupportedFormatError, "factories.double")


# -- hostile and broken uploads -----------------------------------------------------------------


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def test_empty_file_is_refused(tmp_path: Path) -> None:
    assert_refused(_empty(tmp_path / "model.onnx"), InvalidModelError, "empty")


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    assert_refused(factories.write_random_bytes(tmp_path / "model.onnx"), UnsupportedFormatError, "not a recognised model")


def test_truncated_onnx_is_refused(tmp_path: Path) -> None:
    assert_refused(factories.write_truncated_onnx(tmp_path / "model.onnx"), InvalidModelError, "truncated or corrupt")


def test_text_file_named_onnx_is_refused(tmp_path: Path) -> None:
    assert_refused(factories.write_text(tmp_path / "model.onnx"), UnsupportedFormatError, "text")


@pytest.mark.parametrize("location", ["../x", "a/../../x", "/etc/passwd"])
def test_external_data_outside_the_bundle_is_refused(tmp_path: Path, location: str) -> None:
    src = factories.write_bundle_with_location(tmp_path / "bundle.zip", location)
    assert_refused(src, InvalidModelError, f"external data location {location!r}")


@pytest.mark.parametrize("entry", ["../evil.bin", "/tmp/evil.bin"])
def test_zip_entry_leaving_the_archive_is_refused(tmp_path: Path, entry: str) -> None:
    src = factories.write_bundle_with_entry(tmp_path / "bundle.zip", entry)
    assert_refused(src, InvalidModelError, f"zip entry {entry!r} has an absolute path or '..'")


def test_symlink_entry_in_bundle_is_refused(tmp_path: Path) -> None:
    src = factories.write_bundle_with_symlink(tmp_path / "bundle.zip")
    assert_refused(src, InvalidModelError, "symbolic link")


def test_bare_onnx_with_external_data_asks_for_a_bundle(tmp_path: Path) -> None:
    src = factories.write_onnx_external_bare(tmp_path / "model.onnx")
    assert_refused(src, InvalidModelError, "upload a .zip bundle")


def test_operator_from_unknown_domain_is_refused(tmp_path: Path) -> None:
    src = factories.write_unknown_domain(tmp_path / "model.onnx")
    assert_refused(src, UnsupportedFormatError, "'evil.domain'")


def test_ir_version_newer_than_runtime_is_refused(tmp_path: Path) -> None:
    newest = runtime_limits().ir_version
    src = factories.write_ir_version(tmp_path / "model.onnx", newest + 1)
    assert_refused(src, InvalidModelError, f"IR version {newest + 1} is newer than this runtime supports (max {newest})")


def test_memory_bomb_dies_in_the_sandbox(tmp_path: Path) -> None:
    src = factories.write_constant_of_shape_bomb(tmp_path / "model.onnx")
    assert_refused(src, SandboxError, "PORTAL_SANDBOX_MEMORY_MB")


def test_endless_model_is_stopped_at_the_cpu_limit(tmp_path: Path) -> None:
    src = factories.write_endless_loop(tmp_path / "model.onnx")
    settings = Settings(sandbox_cpu_seconds=2)
    assert_refused(src, SandboxError, "CPU-time limit of 2 s; if it is genuine, raise PORTAL_SANDBOX_CPU_S", settings=settings)


def test_endless_model_is_stopped_at_the_wall_clock_limit(tmp_path: Path) -> None:
    src = factories.write_endless_loop(tmp_path / "model.onnx")
    settings = Settings(sandbox_timeout_seconds=3)
    assert_refused(src, SandboxError, "wall-clock limit of 3 s", settings=settings)


@pytest.mark.parametrize(("name", "protocol"), [("model.pkl", 4), ("model.joblib", 5), ("model.pt", 2), ("model.onnx", 0)])
def test_pickle_payload_is_refused_and_never_run(tmp_path: Path, name: str, protocol: int) -> None:
    canary = tmp_path / "canary"
    src = factories.write_pickle_payload(tmp_path / name, canary, protocol=protocol)
    assert_refused(src, UnsupportedFormatError, "use torch.export.save (.pt2), torch.jit.save (TorchScript), skops.io.dump, or export to ONNX")
    assert not canary.exists()


def test_zip_bomb_named_pt_is_refused(tmp_path: Path) -> None:
    src = factories.write_zip_bomb(tmp_path / "model.pt")
    assert_refused(src, InvalidModelError, "zip bomb")


def test_upload_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    src = factories.write_onnx_mlp(tmp_path / "mlp.onnx")
    settings = Settings(max_upload_bytes=src.stat().st_size - 1)
    assert_refused(src, PayloadTooLargeError, "PORTAL_MAX_UPLOAD_MB", settings=settings)


def test_memory_limit_below_torch_needs_says_how_to_raise_it(tmp_path: Path, torch_files: dict[str, Any]) -> None:
    src = _copy(torch_files["pt2_mlp"], tmp_path, "mlp.pt2")
    settings = Settings(sandbox_memory_bytes=1024 * MIB)
    message = assert_refused(src, SandboxError, "limit 1024 MiB of address space", settings=settings)
    assert "PORTAL_SANDBOX_MEMORY_MB" in message


def test_worker_guard_blocks_process_creation_and_writes_outside_scratch(tmp_path: Path) -> None:
    scratch, canary = tmp_path / "scratch", tmp_path / "canary"
    scratch.mkdir()
    script = (
        "import os, sys; from pathlib import Path\n"
        "from portal.ingest._worker import install_guard\n"
        f"install_guard(Path({str(scratch)!r}))\n"
        f"Path({str(scratch / 'inside')!r}).write_text('ok')\n"
        "for attempt in (lambda: os.system('touch ' + sys.argv[1]), lambda: Path(sys.argv[1]).write_text('x')):\n"
        "    try:\n        attempt()\n    except PermissionError as exc:\n        print('blocked:', exc)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script, str(canary)], cwd=repo, capture_output=True, text=True, check=True)
    assert done.stdout.count("blocked:") == 2
    assert (scratch / "inside").read_text() == "ok"
    assert not canary.exists()


# -- the test run: synthetic inputs beyond zeros (issue 14, item 1) ---------------------------------
def _shape_model(op: str) -> Any:
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    inputs = [value("x", TensorProto.FLOAT, [2, 3]), value("s", TensorProto.INT64, [3])]
    graph = helper.make_graph([helper.make_node(op, ["x", "s"], ["y"])], "g", inputs, [value("y", TensorProto.FLOAT, [None, None, None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_shape_inputs_are_found_and_filled_with_values_a_shape_takes() -> None:
    from portal.ingest.modelinfo import describe_model
    from portal.ingest.testrun import shape_inputs, synthetic_feeds

    for op, use, ones in (("Expand", "shape", [1, 1, 1]), ("Reshape", "reshape", [-1, 1, 1])):
        model = _shape_model(op)
        assert shape_inputs(model) == {"s": use}
        signature = describe_model(model)["signature"]
        zeros = synthetic_feeds(signature, shape_inputs(model), fill="zeros", size=1)
        assert zeros["s"].tolist() == [0, 0, 0] and not zeros["x"].any()
        feeds = synthetic_feeds(signature, shape_inputs(model), fill="ones", size=1)
        assert feeds["s"].tolist() == ones and feeds["x"].shape == (2, 3) and feeds["x"].all()


def test_a_reshape_by_an_input_is_test_run_with_minus_one(tmp_path: Path) -> None:
    import onnx

    src = tmp_path / "reshape.onnx"
    onnx.save(_shape_model("Reshape"), str(src))
    report = ingest(src, tmp_path / "work")
    assert report.info["test_run"] == {"ran": True, "inputs": "one-filled inputs (batch 1)"}
    assert report.warnings == []
    out = session_for(report).run(None, {"x": np.ones((2, 3), np.float32), "s": np.array([3, 2, 1])})[0]
    assert out.shape == (3, 2, 1)
