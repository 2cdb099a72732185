"""Export versions as a Triton model repository, optionally with a KServe InferenceService.

Layout written (Triton's own)::

    DIR/NAME/config.pbtxt
    DIR/NAME/VERSION/model.onnx
    DIR/NAME/inferenceservice.yaml      (--format kserve)

``config.pbtxt`` is protobuf text format of Triton's ``ModelConfig``: platform
``onnxruntime_onnx``, inputs and outputs with Triton datatypes, and, when the
first dimension of every tensor is dynamic, ``max_batch_size`` with dynamic
batching (Triton then omits the batch dimension from ``dims``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..services import ModelServices
    from .registry import ModelVersion

__all__ = ["TRITON_DTYPES", "export_repository", "export_zip", "kserve_manifest", "triton_config"]

TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "string": "TYPE_STRING", "bfloat16": "TYPE_BF16",
}


def _tensor_specs(version: ModelVersion) -> list[tuple[str, dict[str, Any]]]:
    specs = [("input", s) for s in version.signature["inputs"]] + [("output", s) for s in version.signature["outputs"]]
    for _, spec in specs:
        if spec.get("kind") != "tensor":
            raise InvalidInputError(
                f"{spec['name']!r} is a {spec.get('kind')}, which Triton's ONNX backend cannot serve; "
                "re-export the model with plain tensor outputs (for skl2onnx classifiers: zipmap=False)"
            )
        if spec.get("shape") is None:
            raise InvalidInputError(f"{spec['name']!r} has no known rank; Triton needs the shape of every tensor")
    return specs


def _batchable(specs: list[tuple[str, dict[str, Any]]]) -> bool:
    return all(spec["shape"] and not isinstance(spec["shape"][0], int) for _, spec in specs)


def triton_config(version: ModelVersion, *, name: str | None = None, max_batch_size: int = 64,
                  queue_delay_us: int = 100) -> str:
    """The ``config.pbtxt`` text for ``version``."""
    specs = _tensor_specs(version)
    batch = max_batch_size if _batchable(specs) else 0
    lines = [f"name: {json.dumps(name or version.name)}", 'platform: "onnxruntime_onnx"',
             f"max_batch_size: {batch}"]
    for kind, spec in specs:
        dims = spec["shape"][1:] if batch else spec["shape"]
        dims_text = ", ".join(str(d) if isinstance(d, int) else "-1" for d in dims)
        lines += [f"{kind} {{", f"  name: {json.dumps(spec['name'])}",
                  f"  data_type: {TRITON_DTYPES[spec['dtype']]}", f"  dims: [ {dims_text} ]", "}"]
    lines += ["version_policy: { specific: { versions: [ %d ] } }" % version.version]
    if batch:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {queue_delay_us}", "}"]
    lines += ['instance_group [ { kind: KIND_CPU, count: 1 } ]']
    return "\n".join(lines) + "\n"


def kserve_manifest(version: ModelVersion, *, storage_uri: str, namespace: str | None = None) -> str:
    """A KServe ``InferenceService`` (YAML) serving the Triton repository at ``storage_uri``."""
    name = version.name.lower().replace("_", "-").replace(".", "-")
    meta = [f"  name: {name}"] + ([f"  namespace: {namespace}"] if namespace else [])
    return "\n".join([
        "apiVersion: serving.kserve.io/v1beta1",
        "kind: InferenceService",
        "metadata:",
        *meta,
        "  annotations:",
        f"    model-portal/ref: {json.dumps(version.ref)}",
        f"    model-portal/sha256: {json.dumps(version.blob_sha)}",
        "spec:",
        "  predictor:",
        "    model:",
        "      modelFormat:",
        "        name: onnx",
        "      protocolVersion: v2",
        "      runtime: kserve-tritonserver",
        f"      storageUri: {json.dumps(storage_uri)}",
        "",
    ])


def _files(portal: ModelServices, ref: str, fmt: str,
           storage_uri: str | None) -> tuple[ModelVersion, dict[str, bytes]]:
    if fmt not in ("triton", "kserve"):
        raise InvalidInputError(f"unknown export format {fmt!r}: expected 'triton' or 'kserve'")
    version = portal.get(ref)
    files = {
        f"{version.name}/config.pbtxt": triton_config(version).encode(),
        f"{version.name}/{version.version}/model.onnx": portal.store.read_bytes(version.blob_sha),
    }
    if fmt == "kserve":
        uri = storage_uri or f"pvc://model-repository/{version.name}"
        files[f"{version.name}/inferenceservice.yaml"] = kserve_manifest(version, storage_uri=uri).encode()
    return version, files


def export_repository(portal: ModelServices, ref: str, dest: str | Path, *, fmt: str = "triton",
                      storage_uri: str | None = None) -> list[Path]:
    """Write the repository for ``ref`` under ``dest``; return the files written."""
    dest = Path(dest)
    version, files = _files(portal, ref, fmt, storage_uri)
    model_dir = dest / version.name
    if (model_dir / str(version.version)).exists():
        raise InvalidInputError(f"{model_dir / str(version.version)} already exists; choose an empty directory")
    staging = dest / f".{version.name}.export-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    try:
        for rel, data in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for rel in files:
            final = dest / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
            written.append(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    portal.registry.record(portal.actor, "version.export", version.ref, {"format": fmt, "dest": str(dest)})
    return written


def export_zip(portal: ModelServices, ref: str, *, fmt: str = "triton", storage_uri: str | None = None) -> bytes:
    """The repository for ``ref`` as zip bytes (for a download button)."""
    _, files = _files(portal, ref, fmt, storage_uri)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in files.items():
            archive.writestr(rel, data)
    return buffer.getvalue()
