"""Image inputs: safe decoding with Pillow and the version's preprocessing.

``preprocessing`` metadata (stored per version)::

    {"mode": "L" | "RGB",          Pillow mode the image is converted to
     "size": [W, H],               resize target (torchvision Resize with an exact size)
     "scale": 1.0,                 multiply after ToTensor (which maps 0..255 to 0..1)
     "mean": [...], "std": [...],  torchvision Normalize
     "invert": false | true | "auto",  auto: invert when the mean brightness > 0.5
     "layout": "NCHW" | "NHWC",
     "softmax": true}              the model outputs logits (applied in the results table)
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidInputError

__all__ = ["IMAGE_SUFFIXES", "is_image_signature", "load_image", "preprocess_images", "warm_up"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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


def _default_preprocessing(shape: Sequence[Any]) -> dict[str, Any]:
    channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else 3
    height = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else 224
    width = shape[3] if len(shape) == 4 and isinstance(shape[3], int) else 224
    return {"mode": "L" if channels == 1 else "RGB", "size": [width, height], "layout": "NCHW"}


def _to_array(image: Image.Image, prep: dict[str, Any]) -> np.ndarray:
    from torchvision.transforms import functional as F  # lazy: torchvision is slow to import

    image = image.convert(prep.get("mode", "RGB"))
    width, height = prep["size"]
    image = F.resize(image, [int(height), int(width)], antialias=True)
    tensor = F.to_tensor(image)
    invert = prep.get("invert", False)
    if invert is True or (invert == "auto" and float(tensor.mean()) > 0.5):
        tensor = 1.0 - tensor
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
    prep = {**_default_preprocessing(shape), **(preprocessing or {})}
    batch = np.stack([_to_array(img, prep) for img in images]).astype(np.float32)
    return batch
