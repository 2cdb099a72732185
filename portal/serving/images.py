"""Image inputs: safe decoding with Pillow and the version's preprocessing.

``preprocessing`` metadata (stored per version, checked by :func:`check_preprocessing`)::

    {"mode": "L" | "RGB",          Pillow mode the image is converted to
     "size": [W, H],               the model's input size
     "resize": "stretch" | "center-crop",  stretch to W×H, or (ImageNet style) scale the shorter
                                   side to 256/224 of the target and cut the centre W×H
     "channel_order": "RGB" | "BGR",  BGR: channels reversed (Caffe-style models)
     "scale": 1.0 | 255.0,         multiply after ToTensor (which maps 0..255 to 0..1): the pixel scale
     "mean": [...], "std": [...],  torchvision Normalize, per channel in the model's channel order
     "invert": false | true | "auto",  auto: invert when the mean brightness > 0.5
     "layout": "NCHW" | "NHWC",
     "softmax": true}              the model outputs logits (applied in the results table)

Steps in that order: convert, resize, ToTensor, invert, channel order, scale, normalise, layout.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidInputError

__all__ = [
    "CHANNEL_ORDERS",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "PREPROCESSING_KEYS",
    "RESIZE_MODES",
    "check_preprocessing",
    "describe_preprocessing",
    "image_defaults",
    "is_image_signature",
    "load_image",
    "parse_labels",
    "preprocess_images",
    "warm_up",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PREPROCESSING_KEYS = ("mode", "size", "resize", "channel_order", "scale", "mean", "std", "invert", "layout", "softmax")
MODES = ("L", "RGB")
RESIZE_MODES = ("stretch", "center-crop")
CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
_CROP_FRACTION = 224 / 256  # ImageNet evaluation: resize to 256, cut the centre 224


def is_image_signature(signature: dict[str, Any], preprocessing: dict[str, Any] | None) -> bool:
    """Whether the version takes one 4-D float image tensor."""
    inputs = signature.get("inputs", [])
    if len(inputs) != 1 or inputs[0].get("kind") != "tensor":
        return False
    shape = inputs[0].get("shape") or []
    return bool(preprocessing) or (len(shape) == 4 and inputs[0].get("dtype", "").startswith("float"))


def load_image(source: str | Path | bytes | BinaryIO, *, max_pixels: int, name: str = "image") -> Image.Image:
    """Open an image safely: header checked against ``max_pixels`` before decoding."""
    data = source
    if isinstance(source, (str, Path)):
        data = open(source, "rb")  # noqa: SIM115 - closed by Pillow's load below
    elif isinstance(source, (bytes, bytearray)):
        data = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(data)  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"{name} is {width}×{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,}; resize it first (or raise PORTAL_MAX_IMAGE_PIXELS)"
                )
            image.load()
    except InvalidInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(f"{name} is not an image Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP): {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"{name} is a broken or truncated image: {exc}") from exc
    return ImageOps.exif_transpose(image)


def warm_up() -> None:
    """Import torchvision's transforms now (seconds, once per process) instead of on the first image."""
    from torchvision.transforms import functional  # noqa: F401


def image_defaults(signature: dict[str, Any]) -> dict[str, Any]:
    """What the input's shape says: grey or colour, the size, channels first or last."""
    spec = (signature.get("inputs") or [{}])[0]
    shape = list(spec.get("shape") or [])
    if len(shape) != 4:
        return {"mode": "RGB", "size": [224, 224], "layout": "NCHW"}
    # channels last when the last axis looks like channels and the second does not
    last = shape[3] in (1, 3) and shape[1] not in (1, 3)
    channels, height, width = (shape[3], shape[1], shape[2]) if last else (shape[1], shape[2], shape[3])
    return {
        "mode": "L" if channels == 1 else "RGB",
        "size": [width if isinstance(width, int) else 224, height if isinstance(height, int) else 224],
        "layout": "NHWC" if last else "NCHW",
    }


def _choice(prep: dict[str, Any], key: str, accepted: Sequence[Any]) -> None:
    if key in prep and prep[key] not in accepted:
        raise InvalidInputError(
            f"invalid preprocessing {key} {prep[key]!r}: expected one of {', '.join(map(repr, accepted))}")


def _numbers(value: Any, what: str) -> list[float]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        numbers = []
    if not numbers or not all(np.isfinite(numbers)):
        raise InvalidInputError(f"invalid preprocessing {what} {value!r}: expected numbers like 0.485, 0.456, 0.406")
    return numbers


def check_preprocessing(prep: Mapping[str, Any], signature: dict[str, Any] | None = None) -> dict[str, Any]:
    """A checked copy of ``prep``: known keys, accepted values, one mean and std per channel.

    Raises:
        InvalidInputError: naming the setting, the accepted values and what was given.
    """
    prep = dict(prep)
    unknown = sorted(set(prep) - set(PREPROCESSING_KEYS))
    if unknown:
        raise InvalidInputError(
            f"unknown preprocessing setting {', '.join(unknown)}; accepted: {', '.join(PREPROCESSING_KEYS)}")
    for key, accepted in (("mode", MODES), ("resize", RESIZE_MODES), ("channel_order", CHANNEL_ORDERS),
                          ("layout", LAYOUTS), ("invert", (False, True, "auto")), ("softmax", (False, True))):
        _choice(prep, key, accepted)
    if "size" in prep:
        size = prep["size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and 1 <= v <= 8192 for v in size)):
            raise InvalidInputError(f"invalid preprocessing size {size!r}: expected [width, height] in pixels")
        prep["size"] = [int(v) for v in size]
    if "scale" in prep:
        prep["scale"] = _numbers([prep["scale"]], "scale")[0]
    for key in ("mean", "std"):
        if prep.get(key) is not None:
            prep[key] = _numbers(prep[key], key)
    if (prep.get("mean") is None) != (prep.get("std") is None):
        raise InvalidInputError("give both a mean and a std for normalisation, or neither")
    if prep.get("std") is not None and any(v == 0 for v in prep["std"]):
        raise InvalidInputError("a std of 0 would divide by zero; give the std the model was trained with")
    channels = 1 if {**(image_defaults(signature) if signature else {}), **prep}.get("mode") == "L" else 3
    for key in ("mean", "std"):
        if prep.get(key) is not None and len(prep[key]) not in (1, channels):
            raise InvalidInputError(
                f"preprocessing {key} has {len(prep[key])} values; give 1 or {channels} (one per channel)")
    return prep


def _resized(image: Image.Image, prep: dict[str, Any]) -> Image.Image:
    from torchvision.transforms import functional as F  # lazy: torchvision is slow to import

    width, height = (int(v) for v in prep["size"])
    if prep.get("resize", "stretch") == "center-crop":
        shorter = round(min(width, height) / _CROP_FRACTION)
        return F.center_crop(F.resize(image, shorter, antialias=True), [height, width])
    return F.resize(image, [height, width], antialias=True)


def _to_array(image: Image.Image, prep: dict[str, Any]) -> np.ndarray:
    from torchvision.transforms import functional as F  # lazy: torchvision is slow to import

    image = _resized(image.convert(prep.get("mode", "RGB")), prep)
    tensor = F.to_tensor(image)
    invert = prep.get("invert", False)
    if invert is True or (invert == "auto" and float(tensor.mean()) > 0.5):
        tensor = 1.0 - tensor
    if prep.get("channel_order", "RGB") == "BGR" and tensor.shape[0] == 3:
        tensor = tensor.flip(0)
    tensor = tensor * float(prep.get("scale", 1.0))
    if prep.get("mean") is not None and prep.get("std") is not None:
        tensor = F.normalize(tensor, mean=list(prep["mean"]), std=list(prep["std"]))
    array = tensor.numpy()
    if prep.get("layout", "NCHW") == "NHWC":
        array = np.transpose(array, (1, 2, 0))
    return array


def preprocess_images(
    images: Sequence[Image.Image],
    signature: dict[str, Any],
    preprocessing: dict[str, Any] | None,
) -> np.ndarray:
    """Stack ``images`` into the float32 batch the model's single input expects."""
    if not images:
        raise InvalidInputError("no images given; drop at least one image file")
    spec = signature["inputs"][0]
    shape = spec.get("shape") or []
    if len(shape) != 4:
        raise InvalidInputError(
            f"this model takes {spec['name']!r} with shape {shape}, not images; use a table or a CSV file"
        )
    prep = {**image_defaults(signature), **check_preprocessing(preprocessing or {}, signature)}
    batch = np.stack([_to_array(img, prep) for img in images]).astype(np.float32)
    return batch


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def describe_preprocessing(preprocessing: dict[str, Any] | None, signature: dict[str, Any]) -> str:
    """One sentence saying what is done to an image before the model sees it."""
    prep = {**image_defaults(signature), **(preprocessing or {})}
    width, height = prep["size"]
    crop = " (shorter side scaled, centre cut)" if prep.get("resize") == "center-crop" else " (stretched)"
    colour = "greyscale" if prep.get("mode") == "L" else f"{prep.get('channel_order', 'RGB')} channel order"
    scale = float(prep.get("scale", 1.0))
    pixels = {1.0: "pixels scaled to 0–1", 255.0: "pixels kept at 0–255"}.get(scale, f"pixels 0–1 × {scale:g}")
    parts = [f"resized to {width}×{height}{crop}", colour, pixels]
    if prep.get("invert") in (True, "auto"):
        parts.append("inverted" if prep["invert"] is True else "inverted when light")
    if prep.get("mean") is not None and prep.get("std") is not None:
        parts.append(f"normalised with mean {_listed(prep['mean'])} and std {_listed(prep['std'])}")
    else:
        parts.append("no mean/std normalisation")
    parts.append(f"layout {prep.get('layout', 'NCHW')}")
    return "Preprocessing applied: " + ", ".join(parts) + "."


def parse_labels(data: bytes | str, *, name: str = "labels file") -> list[str]:
    """Class labels from a file: a JSON list, or one label per line (blank lines dropped).

    Raises:
        InvalidInputError: the file is not text, not a list, or holds no labels.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{name} is not UTF-8 text; give one label per line or a JSON list") from exc
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{name} looks like JSON but is not valid: {exc.msg} (line {exc.lineno})") from exc
        if not isinstance(parsed, list) or any(isinstance(v, (list, dict)) for v in parsed):
            raise InvalidInputError(f"{name} must be a JSON list of labels like [\"cat\", \"dog\"], not an object")
        labels = [str(v).strip() for v in parsed]
    else:
        labels = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not labels:
        raise InvalidInputError(f"{name} holds no labels; give one label per line or a JSON list")
    return labels
