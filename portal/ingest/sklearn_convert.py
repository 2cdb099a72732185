"""Load a skops file with a fixed allowlist and convert the estimator to ONNX with skl2onnx.

Runs inside the sandboxed child only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from portal.errors import InvalidModelError, UnsupportedFormatError
from portal.ingest.onnx_check import Conversion, first_line, raise_if_memory

__all__ = ["TRUSTED_TYPES", "convert_skops", "load_skops"]

# skops itself trusts builtins, numpy/scipy containers and every public
# scikit-learn estimator, transformer and Pipeline/ColumnTransformer class.
# These are the fitted internals those estimators need on top; the list is fixed
# here and never taken from the uploaded file.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.feature_selection._univariate_selection.chi2",
)
_ML_OPSET = 3  # skl2onnx's most tested ai.onnx.ml opset


def load_skops(path: Path) -> Any:
    """Load ``path`` with skops, trusting only skops' defaults and :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    try:
        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - skops raises many classes on a broken file
        raise_if_memory(exc)
        raise InvalidModelError(f"skops could not read the file: {first_line(exc)}") from exc
    if untrusted:
        raise UnsupportedFormatError(
            f"the skops file needs the untrusted type(s) {', '.join(untrusted)}; only scikit-learn "
            "estimators, transformers, pipelines and their numpy data are accepted"
        )
    try:
        return sio.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001
        raise_if_memory(exc)
        raise InvalidModelError(f"skops could not load the estimator: {first_line(exc)}") from exc


def _column_transformers(model: Any) -> Iterator[Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(model, ColumnTransformer):
        yield model
    elif isinstance(model, Pipeline) and model.steps:
        yield from _column_transformers(model.steps[0][1])


def _string_positions(transformer: Any) -> list[int]:
    """Positions, within a transformer's columns, of string categorical columns."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(transformer, Pipeline):
        return next((p for _, step in transformer.steps if (p := _string_positions(step))), [])
    if isinstance(transformer, (OneHotEncoder, OrdinalEncoder)):
        return [i for i, cats in enumerate(transformer.categories_) if np.asarray(cats).dtype == object]
    return []


def _column_indices(ct: Any, name: str, columns: Any) -> list[int]:
    known = getattr(ct, "_transformer_to_input_indices", {})
    if name in known:
        return [int(i) for i in known[name]]
    features = [str(f) for f in ct.feature_names_in_]
    return [features.index(c) if isinstance(c, str) else int(c) for c in np.atleast_1d(columns)]


def _string_columns(model: Any) -> set[int]:
    strings: set[int] = set()
    for ct in _column_transformers(model):
        for name, transformer, columns in ct.transformers_:
            indices = _column_indices(ct, name, columns)
            strings.update(indices[p] for p in _string_positions(transformer) if p < len(indices))
    return strings


def _initial_types(model: Any) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    features = [str(f) for f in getattr(model, "feature_names_in_", [])]
    strings = _string_columns(model) if features else set()
    if strings:
        return [
            (name, StringTensorType([None, 1]) if i in strings else FloatTensorType([None, 1]))
            for i, name in enumerate(features)
        ]
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        raise InvalidModelError(f"the {type(model).__name__} is not fitted (it has no n_features_in_)")
    return [("input", FloatTensorType([None, int(n_features)]))]


def _suggested(model: Any) -> dict[str, Any]:
    from sklearn.base import is_classifier, is_regressor

    suggested: dict[str, Any] = {}
    if hasattr(model, "feature_names_in_"):
        suggested["feature_names"] = [str(f) for f in model.feature_names_in_]
    if is_classifier(model):
        suggested["task"] = "classification"
        if hasattr(model, "classes_"):
            suggested["class_labels"] = [str(c) for c in model.classes_]
    else:
        suggested["task"] = "regression" if is_regressor(model) else "other"
    return suggested


def _rename_inputs(model: onnx.ModelProto, names: list[str]) -> None:
    """skl2onnx sanitises input names ('petal length (cm)' -> 'petal_length__cm_'); restore them."""
    taken = {o for node in model.graph.node for o in node.output} | {init.name for init in model.graph.initializer}
    mapping = {v.name: n for v, n in zip(model.graph.input, names) if v.name != n and n not in taken}
    for value in model.graph.input:
        value.name = mapping.get(value.name, value.name)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)


def convert_skops(path: Path, *, opset: int, ml_opset: int) -> tuple[onnx.ModelProto, Conversion]:
    """Load a skops file and convert its estimator to ONNX (classifiers without ZipMap)."""
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from sklearn.base import is_classifier

    model = load_skops(path)
    initial = _initial_types(model)
    target = {"": min(opset, get_latest_tested_opset_version()), "ai.onnx.ml": min(ml_opset, _ML_OPSET)}
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    try:
        onx = convert_sklearn(model, initial_types=initial, target_opset=target, options=options)
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many classes
        raise_if_memory(exc)
        raise InvalidModelError(
            f"skl2onnx cannot convert {type(model).__name__}: {first_line(exc)}; "
            "export the model to ONNX yourself and upload the .onnx"
        ) from exc
    _rename_inputs(onx, [name for name, _ in initial])
    kind = "per-column inputs" if len(initial) > 1 or initial[0][0] != "input" else "one input 'input'"
    conversion = Conversion(
        warnings=[f"converted from scikit-learn {type(model).__name__} with skl2onnx ({kind}, opset {target['']})"],
        suggested=_suggested(model),
    )
    return onx, conversion

