"""The files a new analyst brings to the portal, built from third-party sources for the Chromium walk.

* ``model.onnx``: an skl2onnx pipeline over scikit-learn's ``load_wine`` with ``malic acid``
  renamed before conversion (skl2onnx sanitises it to ``malic_acid``) and a string column
  ``alcohol band`` one-hot encoded; its reference CSV and a batch CSV keep the original spelling;
* ``wine-mlp.onnx``: a second skl2onnx pipeline (scaler + MLP, so it has MatMuls to quantize);
* onnx's bundled ``light_squeezenet.onnx`` and ``test_expand_shape_model1``, a labels file
  of 1,000 lines and a PNG drawn with Pillow;
* torchvision's ``mobilenet_v3_small`` with random weights, exported to ONNX (logits).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from PIL import Image, ImageDraw

ONNX_DATA = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data"
SQUEEZENET = ONNX_DATA / "light" / "light_squeezenet.onnx"
EXPAND_SHAPE = ONNX_DATA / "simple" / "test_expand_shape_model1" / "model.onnx"
CULTIVARS = ["barolo", "grignolino", "barbera"]
IMAGENET_MEAN, IMAGENET_STD = "0.485, 0.456, 0.406", "0.229, 0.224, 0.225"


@dataclass(frozen=True)
class Material:
    root: Path
    wine_model: Path  # called model.onnx, as a converter writes it
    wine_reference: Path
    wine_batch: Path
    wine_frame: pd.DataFrame  # the reference rows, original spelling
    wine_expected: list[str]  # scikit-learn's predictions for the batch rows, as labels
    mlp_model: Path
    mlp_rows: Path  # rows to explain (no reference data for this one)
    squeezenet: Path
    expand_shape: Path
    labels: Path
    png: Path
    mobilenet: Path | None


def wine_frame() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    frame = data.data.rename(columns={"malic_acid": "malic acid"}).astype(np.float32)
    frame["alcohol band"] = pd.cut(frame["alcohol"], [0, 12.5, 13.5, 99], labels=["low", "mid", "high"]).astype(str)
    return frame, data.target


def _wine_pipeline(frame: pd.DataFrame, target: pd.Series) -> tuple[bytes, Any]:
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [c for c in frame.columns if c != "alcohol band"]
    prepare = ColumnTransformer([("numbers", StandardScaler(), numbers),
                                 ("band", OneHotEncoder(handle_unknown="ignore"), ["alcohol band"])])
    model = make_pipeline(prepare, LogisticRegression(max_iter=2000)).fit(frame, target)
    return to_onnx(model, frame[:1], options={"zipmap": False}, target_opset=17).SerializeToString(), model


def _mlp_pipeline(frame: pd.DataFrame, target: pd.Series) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    numbers = frame.drop(columns=["alcohol band"])
    model = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=500, random_state=0)).fit(numbers, target)
    return to_onnx(model, numbers[:1], options={"zipmap": False}, target_opset=17).SerializeToString()


def png(seed: int = 3) -> bytes:
    """A 320×240 picture: a noisy sky, a sun and a red house, drawn with Pillow."""
    rng = np.random.default_rng(seed)
    sky = np.clip(rng.normal(170, 25, (240, 320, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(sky)
    draw = ImageDraw.Draw(image)
    draw.ellipse((230, 20, 290, 80), fill=(250, 210, 40))
    draw.rectangle((60, 120, 200, 230), fill=(180, 40, 30))
    draw.polygon([(50, 120), (130, 60), (210, 120)], fill=(90, 50, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mobilenet(path: Path) -> Path:
    """torchvision's mobilenet_v3_small, random weights, exported to ONNX with a ``logits`` output."""
    import torch
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, dynamo=False)
    return path


def build(root: Path, *, with_mobilenet: bool = True) -> Material:
    frame, target = wine_frame()
    (root / "wine").mkdir(parents=True, exist_ok=True)
    wine_model = root / "wine" / "model.onnx"
    onnx_bytes, fitted = _wine_pipeline(frame, target)
    wine_model.write_bytes(onnx_bytes)
    reference = root / "wine-reference.csv"
    frame.assign(target=target).to_csv(reference, index=False)
    batch = frame.sample(40, random_state=1).reset_index(drop=True)
    batch.insert(0, "bottle", [f"b{i:02d}" for i in range(len(batch))])
    batch_file = root / "cellar.csv"
    batch.to_csv(batch_file, index=False)
    expected = [CULTIVARS[i] for i in fitted.predict(batch.drop(columns=["bottle"]))]
    mlp_model = root / "wine-mlp.onnx"
    mlp_model.write_bytes(_mlp_pipeline(frame, target))
    rows = root / "tasting.csv"
    frame.drop(columns=["alcohol band"]).sample(16, random_state=2).to_csv(rows, index=False)
    labels = root / "synset.txt"
    labels.write_text("\n".join(f"imagenet class {i}" for i in range(1000)) + "\n")
    picture = root / "house.png"
    picture.write_bytes(png())
    torch_model = mobilenet(root / "mobilenet_v3_small.onnx") if with_mobilenet else None
    return Material(root, wine_model, reference, batch_file, frame, expected, mlp_model, rows, SQUEEZENET,
                    EXPAND_SHAPE, labels, picture, torch_model)
