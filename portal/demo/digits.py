"""The digits demo: a small CNN on 8x8 images (a ``torch.export`` archive) and sample scans.

Where the kernel has no Landlock the portal refuses ``.pt2`` uploads, so the
demo registers the same program exported to ONNX instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import reference, split
from .files import replacing
from .scoring import classification_metrics
from .source import DemoSource, card

__all__ = ["DIGITS_PREPROCESSING", "build_digits", "predict_torch"]

DIGITS_PREPROCESSING: dict[str, Any] = {
    "mode": "L",
    "size": [8, 8],
    "scale": 1.0,
    "mean": [0.0],
    "std": [1.0],
    "invert": "auto",
    "layout": "NCHW",
    "softmax": True,
}
"""How to turn an uploaded image into the digits CNN's input tensor.

In order: ``Image.convert(mode)`` (Pillow mode, ``"L"`` = 8-bit grey);
``"invert": "auto"`` inverts (255 - v) when the image's mean brightness,
on [0, 1], is above 0.5, because the model was trained on light ink on a
dark background and scans are dark ink on white (``True``/``False`` force it);
``Image.resize(size)`` with ``size`` as (W, H) and Pillow's default filter;
ToTensor, i.e. divide by 255 to [0, 1]; multiply by ``scale``; then
``(x - mean) / std`` per channel; ``layout`` orders the axes of the batch
(N, C, H, W). ``"softmax": True`` says the outputs are logits: apply a
softmax to show probabilities.
"""

_SAMPLES_PER_DIGIT = 2
_BATCH = 32
_SAMPLE_PIXELS = 64

_DIGITS_BODY = """
Optical recognition of handwritten digits (UCI, bundled with scikit-learn):
1,797 greyscale 8x8 images, ink intensity 0..16 scaled to [0, 1], light ink on
a dark background.

**Model:** PyTorch CNN `Conv2d(1, 16, 3) → ReLU → Conv2d(16, 32, 3) → ReLU →
MaxPool(2) → Linear(512, 10)`, trained 15 epochs with Adam (one-cycle schedule);
saved with `torch.export.save`, batch dimension dynamic.

**Input:** float32 tensor `(N, 1, 8, 8)` in [0, 1]. Images: convert to grey,
invert dark-on-light scans, resize to 8x8, divide by 255.

**Output:** 10 logits for the classes "0".."9" (apply a softmax for probabilities).
"""


def build_digits(dest: Path, seed: int) -> DemoSource:
    """Small CNN on 8x8 digit images, saved as a ``torch.export`` archive."""
    x_train, x_test, y_train, y_test = split("digits", seed)
    labels = [str(d) for d in range(10)]
    program = _train_digits_cnn(x_train, y_train, seed)
    path = dest / "digits.pt2"
    _save_program(program, path)
    metrics = classification_metrics(y_test, predict_torch(path, x_test, labels))
    _write_digit_samples(dest / "digits_samples", x_test, y_test)
    return DemoSource(
        name="digits",
        path=path if _pytorch_uploads_confined() else _export_onnx(program, dest / "digits.onnx"),
        description=card("Handwritten digits (8x8)", _DIGITS_BODY, metrics, len(x_train), len(x_test)),
        task="classification",
        feature_names=[str(c) for c in x_train.columns],
        class_labels=labels,
        tags=["demo", "pytorch", "image", "cnn", "multiclass-classification"],
        reference=reference("digits", seed),
        input_shape=[1, 1, 8, 8],
        preprocessing=dict(DIGITS_PREPROCESSING),
        seed=seed,
        metrics=metrics,
    )


def _train_digits_cnn(x_train: pd.DataFrame, y_train: pd.Series, seed: int) -> Any:
    """Train the CNN with a private RNG state and return its exported program."""
    import torch

    images = torch.from_numpy(x_train.to_numpy(np.float32, copy=True).reshape(-1, 1, 8, 8))
    targets = torch.from_numpy(y_train.astype(int).to_numpy(np.int64, copy=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _digits_cnn(torch)
        _fit(torch, model, images, targets, seed)
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros(2, 1, 8, 8),)
    return torch.export.export(model, example, dynamic_shapes=({0: batch},))


def _digits_cnn(torch: Any) -> Any:
    """The (untrained) network."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def _fit(torch: Any, model: Any, images: Any, targets: Any, seed: int, *, epochs: int = 15) -> None:
    """Mini-batch Adam with a one-cycle learning rate and a seeded shuffle."""
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(images) // _BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(_BATCH):
            optimizer.zero_grad()
            loss_fn(model(images[batch]), targets[batch]).backward()
            optimizer.step()
            schedule.step()


def _save_program(program: Any, path: Path) -> None:
    """``torch.export.save``, atomically."""
    import torch

    with replacing(path) as tmp:
        torch.export.save(program, tmp)


def _pytorch_uploads_confined() -> bool:
    from ..ingest.confine import landlock_abi

    return landlock_abi() >= 1


def _export_onnx(program: Any, path: Path) -> Path:
    """Our own program as ONNX, for a kernel where the portal refuses ``.pt2`` uploads (no Landlock)."""
    import torch

    with replacing(path) as tmp:
        torch.onnx.export(program, (torch.zeros(2, 1, 8, 8),), str(tmp), dynamo=True, external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    return path


def predict_torch(path: Path, x: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Class labels the saved ``.pt2`` program predicts for pixel rows."""
    import torch

    path = path.with_suffix(".pt2")  # the ONNX fallback sits beside the archive it came from
    module = torch.export.load(path).module()
    images = torch.from_numpy(x.to_numpy(np.float32, copy=True).reshape(-1, 1, 8, 8))
    with torch.no_grad():
        logits = module(images)
    return np.asarray(labels, dtype=object)[logits.argmax(dim=1).numpy()]


def _write_digit_samples(folder: Path, x_test: pd.DataFrame, y_test: pd.Series) -> None:
    """PNG scans of held-out digits: dark ink on white, upscaled, ``digit_<label>_<i>.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for pixels, label in zip(x_test.to_numpy(np.float32), y_test, strict=True):
        index = counts.get(label, 0)
        if index >= _SAMPLES_PER_DIGIT:
            continue
        counts[label] = index + 1
        ink = np.rint(255.0 * (1.0 - pixels.reshape(8, 8))).astype(np.uint8)
        image = Image.fromarray(ink).resize((_SAMPLE_PIXELS, _SAMPLE_PIXELS), Image.Resampling.BICUBIC)
        path = folder / f"digit_{label}_{index}.png"
        with replacing(path) as tmp:
            image.save(tmp, format="PNG")
