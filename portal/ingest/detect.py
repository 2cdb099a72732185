"""Recognise an upload by its bytes and inspect zip archives without extracting them.

Nothing here unpickles, imports or executes anything from the file: pickles are
recognised by their opcodes (``pickletools.genops`` only parses them), zip
archives by their central directory, ONNX by parsing the protobuf.
"""

from __future__ import annotations

import io
import os
import pickletools
import stat
import zipfile
from pathlib import Path, PurePosixPath

import onnx
from google.protobuf.message import DecodeError

from portal.config import Settings
from portal.errors import InvalidModelError, PayloadTooLargeError

__all__ = [
    "SAFE_EXPORT_HINT",
    "check_zip",
    "classify_zip",
    "detect_format",
    "extract_zip",
    "parse_onnx",
    "sniff",
]

SAFE_EXPORT_HINT = (
    "use torch.export.save (.pt2), torch.jit.save (TorchScript), skops.io.dump, or export to ONNX"
)

MAX_ZIP_ENTRIES = 10_000
_RATIO_MIN_BYTES = 1024 * 1024  # tiny entries compress wildly without being bombs
_SNIFF_BYTES = 64 * 1024
_OLD_PICKLE_BYTES = 1024 * 1024
_PICKLE_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "BUILD"}
_MAGIC = {
    b"\x1f\x8b": "compressed",  # gzip (also joblib compress=...)
    b"BZh": "compressed",
    b"\xfd7zXZ\x00": "compressed",
    b"\x28\xb5\x2f\xfd": "compressed",  # zstd
    b"\x89HDF\r\n\x1a\n": "hdf5",
    b"GGUF": "gguf",
}


def detect_format(path: Path) -> str:
    """Name the format of ``path`` from its content, never its file name.

    Returns one of ``"onnx"``, ``"zip-onnx"``, ``"torchscript"``, ``"pt2"``,
    ``"skops"``, ``"pickle"``, ``"torch-pickle"``, ``"zip"``, ``"compressed"``,
    ``"hdf5"``, ``"gguf"``, ``"onnx-corrupt"``, ``"text"``, ``"empty"`` or ``"unknown"``.
    """
    return sniff(Path(path))[0]


def sniff(path: Path) -> tuple[str, onnx.ModelProto | None]:
    """Detect the format of ``path``; for ONNX also return the parsed model."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head:
        return "empty", None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            return classify_zip(_zip_infos(path)), None
        except InvalidModelError:
            return "unknown", None
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle", None
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name, None
    model = parse_onnx(path.read_bytes())
    if model is not None:
        return "onnx", model
    if len(head) > 4 and head[0] == 0x08 and 1 <= head[1] <= 32:  # field 1 (ir_version) opens every ONNX file
        return "onnx-corrupt", None
    if _looks_like_old_pickle(path):
        return "pickle", None
    if _looks_like_text(head):
        return "text", None
    return "unknown", None


def parse_onnx(data: bytes) -> onnx.ModelProto | None:
    """Parse ``data`` as an ONNX model with a graph; ``None`` if it is not one."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None
    graph = model.graph
    if not model.HasField("graph") or not (len(graph.node) or len(graph.output)):
        return None
    return model


def _looks_like_old_pickle(path: Path) -> bool:
    """Protocol 0/1 pickles have no magic: their opcodes must parse up to STOP.

    Ordinary text often parses as a few opcodes too ('hello' is BINGET, LIST,
    LIST, OBJ), but hits an invalid one long before a STOP.
    """
    with open(path, "rb") as fh:
        sample = fh.read(_OLD_PICKLE_BYTES)
    truncated = len(sample) == _OLD_PICKLE_BYTES
    count, code = 0, False
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(sample)):
            count += 1
            code = code or opcode.name in _PICKLE_CODE_OPS
            if opcode.name == "STOP":
                return count > 1
    except Exception:  # noqa: BLE001 - any parse error means "not a pickle" (unless the sample was cut)
        pass
    return truncated and (code or count >= 1000)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


# -- zip archives -------------------------------------------------------------


def _zip_infos(path: Path) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise InvalidModelError(f"the file looks like a zip archive but cannot be read: {exc}") from exc


def _is_dir(info: zipfile.ZipInfo) -> bool:
    # not ZipInfo.is_dir(): it raises IndexError on an entry with an empty name
    return info.filename.endswith("/")


def _relative_names(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Entry names without the single top folder that torch puts in its archives."""
    names = [info.filename for info in infos if not _is_dir(info)]
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return [name.split("/", 1)[1] for name in names]
    return names


def classify_zip(infos: list[zipfile.ZipInfo]) -> str:
    """Name the kind of zip archive from its entry names."""
    all_names = [info.filename for info in infos if not _is_dir(info)]
    rel = set(_relative_names(infos))
    if "schema.json" in all_names:
        return "skops"
    if "archive_format" in rel or any(n.startswith("models/") and n.endswith(".json") for n in rel):
        return "pt2"
    if {"data.pkl", "constants.pkl"} <= rel and any(n.startswith("code/") for n in rel):
        return "torchscript"
    if "data.pkl" in rel:
        return "torch-pickle"
    if sum(name.lower().endswith(".onnx") for name in all_names) == 1:
        return "zip-onnx"
    return "zip"


def _check_entry_name(name: str) -> None:
    if not name.strip("/"):
        raise InvalidModelError(f"zip entry {name!r} has an empty name; rebuild the archive")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")
        or ".." in parts
        or "\x00" in name
    ):
        raise InvalidModelError(
            f"zip entry {name!r} has an absolute path or '..'; archive entries must be "
            "relative paths inside the archive"
        )


def _check_entry(info: zipfile.ZipInfo, max_ratio: int) -> None:
    _check_entry_name(info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidModelError(
            f"zip entry {info.filename!r} is a symbolic link; store regular files only"
        )
    if info.flag_bits & 0x1:
        raise InvalidModelError(f"zip entry {info.filename!r} is encrypted; upload an unencrypted archive")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _RATIO_MIN_BYTES and ratio > max_ratio:
        raise InvalidModelError(
            f"zip entry {info.filename!r} expands {ratio:.0f}:1 (limit {max_ratio}:1); "
            "refused as a possible zip bomb"
        )


def check_zip(path: Path, *, settings: Settings, max_entries: int = MAX_ZIP_ENTRIES) -> list[zipfile.ZipInfo]:
    """Refuse zip bombs, unsafe entry names, symlinks and encrypted entries; return the entries."""
    infos = _zip_infos(path)
    if len(infos) > max_entries:
        raise InvalidModelError(f"the zip archive has {len(infos)} entries (limit {max_entries})")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise InvalidModelError("the zip archive has duplicate entry names; rebuild it")
    total = sum(info.file_size for info in infos)
    if total > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the zip archive expands to {total} bytes, over the upload limit of "
            f"{settings.max_upload_bytes} bytes (PORTAL_MAX_UPLOAD_MB)"
        )
    for info in infos:
        _check_entry(info, settings.max_zip_ratio)
    archive_size = max(os.path.getsize(path), 1)
    if total > _RATIO_MIN_BYTES and total / archive_size > settings.max_zip_ratio:
        raise InvalidModelError(
            f"the zip archive expands {total / archive_size:.0f}:1 (limit "
            f"{settings.max_zip_ratio}:1); refused as a possible zip bomb"
        )
    return infos


def extract_zip(path: Path, dest: Path, *, settings: Settings) -> None:
    """Extract a checked archive into ``dest``, refusing anything that would leave it."""
    infos = check_zip(path, settings=settings)
    root = os.path.realpath(dest)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in infos:
                _extract_entry(archive, info, root)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, NotImplementedError) as exc:
        raise InvalidModelError(f"the zip archive cannot be extracted: {exc}") from exc


def _extract_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: str) -> None:
    target = os.path.realpath(os.path.join(root, info.filename))
    if not target.startswith(root + os.sep):
        raise InvalidModelError(f"zip entry {info.filename!r} would be written outside the archive folder")
    if info.is_dir():
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    _copy_entry(archive, info, target)


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: str) -> None:
    written = 0
    with archive.open(info) as src, open(target, "xb") as out:
        while chunk := src.read(1024 * 1024):
            written += len(chunk)
            if written > info.file_size:
                raise InvalidModelError(f"zip entry {info.filename!r} is larger than its header says")
            out.write(chunk)
