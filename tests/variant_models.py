"""Small real models for the variant tests: a trained MLP, a CNN, a tree ensemble, old-opset graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from tiny import add_model

CLASSES = ["malignant", "benign"]


def breast_cancer_mlp(*, seed: int = 0) -> tuple[onnx.ModelProto, pd.DataFrame]:
    """scikit-learn's MLPClassifier (30 → 64 → 32 → 2) trained on breast cancer, as an ONNX graph.

    Returns the model and 200 rows of the data set with a ``target`` column of class names.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier

    bunch = load_breast_cancer(as_frame=True)
    x = bunch.data.to_numpy(np.float32)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    net = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=seed)
    net.fit((x - mean) / scale, bunch.target)
    inits = [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(scale, "scale")]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "scale"], ["h_in"])]
    prev = "h_in"
    layers = list(zip(net.coefs_, net.intercepts_, strict=True))
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"z{i}"], name=f"dense{i}"))
        prev = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    # MLPClassifier has one logistic output z for two classes: [1 - sigmoid(z), sigmoid(z)] = softmax([-z/2, z/2])
    inits.append(numpy_helper.from_array(np.array([[-0.5, 0.5]], np.float32), "halves"))
    nodes += [helper.make_node("Mul", [prev, "halves"], ["pair"]),
              helper.make_node("Softmax", ["pair"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 30])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    frame = bunch.data.assign(target=np.asarray(CLASSES, dtype=object)[bunch.target.to_numpy()])
    return model, frame.sample(n=200, random_state=seed).reset_index(drop=True)


def add_mlp(portal: Any, name: str = "mlp") -> Any:
    model, reference = breast_cancer_mlp()
    features = [c for c in reference.columns if c != "target"]
    return add_model(portal, model, name, task="classification", reference=reference,
                     feature_names=features, class_labels=CLASSES)


def tiny_cnn(*, seed: int = 0) -> onnx.ModelProto:
    """x[N, 1, 8, 8] → Conv(4, 3×3) → Relu → Flatten → Gemm → logits[N, 10]."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "K"),
        numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "KB"),
        numpy_helper.from_array((rng.normal(size=(4 * 6 * 6, 10)) / 12).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(10, np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "K", "KB"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W", "B"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_only(*, seed: int = 0) -> onnx.ModelProto:
    """x[N, 1, 8, 8] → Conv → Relu: nothing for the default dynamic int8 (MatMul/Gemm) to quantize."""
    model = tiny_cnn(seed=seed)
    graph = model.graph
    del graph.node[2:]
    keep = [i for i in graph.initializer if i.name in ("K", "KB")]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, ["N", 4, 6, 6]))
    return model


def tree_ensemble() -> onnx.ModelProto:
    """A random forest on iris converted by skl2onnx (ai.onnx.ml TreeEnsembleClassifier)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x.astype(np.float32), y)
    return to_onnx(forest, x[:1].astype(np.float32), options={id(forest): {"zipmap": False}}, target_opset=17)


def old_opset_mlp(opset: int = 9) -> onnx.ModelProto:
    """x[N, 4] → MatMul → Relu, at an old opset that the version converter upgrades."""
    w = numpy_helper.from_array(np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=4)


def unconvertible() -> onnx.ModelProto:
    """Opset 8 with ImageScaler, an experimental op later removed: the converter cannot upgrade it."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]),
         helper.make_node("ImageScaler", ["img"], ["scaled"], scale=2.0, bias=[0.0])], "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N", 1, 2, 2])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=4)


def write_digit_pngs(folder: Path, count: int = 12) -> Path:
    """``count`` 8×8 grey PNGs of scikit-learn's digits (light ink on black)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[:count]
    for i, pixels in enumerate(images):
        Image.fromarray((pixels / 16 * 255).astype(np.uint8), mode="L").save(folder / f"digit_{i:02d}.png")
    return folder
