"""Students for rows [N, features]: a small torch MLP, or gradient-boosted trees (scikit-learn + skl2onnx).

    mlp     inputs standardised inside the network → Linear(64) → ReLU → Linear(64) → ReLU → Linear(outputs);
            trained on the teacher's probabilities (soft targets) or its standardised values
    trees   GradientBoostingClassifier on the teacher's predicted classes (trees take hard labels), or
            GradientBoostingRegressor on its values; depth 3, rounds added ten at a time until 200 or the budget

Both return an ONNX "core": one float32 input ``student_input`` and one output
(logits, probabilities or values) that :mod:`.export` turns into the parent's outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidModelError
from ..methods.base import progress_line
from .fit import FitResult, fit

__all__ = ["MLP_HIDDEN", "TREE_ROUNDS", "mlp_network", "train_mlp", "train_trees"]

MLP_HIDDEN = (64, 64)
TREE_ROUNDS = 200
_ROUND_STEP = 10


def mlp_network(x: np.ndarray, outputs: int, *, values: np.ndarray | None = None) -> Any:
    """The untrained MLP; it standardises its inputs itself and, for a regressor, un-standardises its outputs.

    ``values`` (regression targets) set the output scale; None for a classifier (logits).
    """
    import torch

    mean, std = x.mean(axis=0), x.std(axis=0)
    out_mean = values.mean(axis=0) if values is not None else np.zeros(outputs)
    out_std = values.std(axis=0) if values is not None else np.ones(outputs)
    return _Scaled(torch, x.shape[1], outputs, mean, np.where(std > 1e-12, std, 1.0), out_mean,
                   np.where(out_std > 1e-12, out_std, 1.0))


def _Scaled(torch: Any, features: int, outputs: int, *stats: np.ndarray) -> Any:  # noqa: N802 - a class factory
    class Scaled(torch.nn.Module):
        """(x - mean) / std → MLP → y * out_std + out_mean, all in the exported graph."""

        def __init__(self) -> None:
            super().__init__()
            for name, value in zip(("mean", "std", "out_mean", "out_std"), stats, strict=True):
                self.register_buffer(name, torch.from_numpy(np.asarray(value, np.float32)))
            layers: list[Any] = []
            width = features
            for hidden in MLP_HIDDEN:
                layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
                width = hidden
            self.body = torch.nn.Sequential(*layers, torch.nn.Linear(width, outputs))

        def forward(self, x: Any) -> Any:
            return self.body((x - self.mean) / self.std) * self.out_std + self.out_mean

        def standardised(self, x: Any) -> Any:
            """The output before un-standardising: what a regressor trains on."""
            return self.body((x - self.mean) / self.std)

    return Scaled()


def train_mlp(x: np.ndarray, target: np.ndarray, *, classifier: bool, epochs: int, budget: float, seed: int,
              progress: Callable[[str], None]) -> tuple[Any, FitResult]:
    """The trained MLP student (a torch module) and how training went."""
    import torch

    torch.manual_seed(seed)
    net = mlp_network(x, target.shape[1], values=None if classifier else target)
    train_target = target if classifier else (target - net.out_mean.numpy()) / net.out_std.numpy()
    trainer = net if classifier else _Standardised(torch, net)
    result = fit(trainer, x, train_target, soft=classifier, epochs=epochs, budget=budget,
                 batch=min(128, max(16, len(x) // 32)), lr=3e-3, seed=seed, label="the mlp student",
                 progress=progress)
    net.eval()
    return net, result


def _Standardised(torch: Any, net: Any) -> Any:  # noqa: N802 - a class factory
    class Standardised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.standardised(x)

    return Standardised()


def train_trees(x: np.ndarray, target: np.ndarray, *, classifier: bool, budget: float, seed: int,
                progress: Callable[[str], None]) -> tuple[onnx.ModelProto, str, dict[str, Any]]:
    """Gradient-boosted trees as an ONNX core, its output kind ("probabilities" or "values"), and statistics.

    Raises:
        InvalidModelError: the teacher never predicts some class, or a regressor has several outputs.
    """
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    x = np.ascontiguousarray(x, np.float32)
    if classifier:
        y = target.argmax(axis=1)
        missing = sorted(set(range(target.shape[1])) - set(y.tolist()))
        if missing:
            raise InvalidModelError(
                f"the trees student cannot learn classes the parent never predicts on the rows (column(s) "
                f"{', '.join(map(str, missing))}); pick the mlp student (it learns the probabilities), or upload "
                "rows that cover every class")
        model: Any = GradientBoostingClassifier(n_estimators=_ROUND_STEP, max_depth=3, subsample=0.8,
                                                random_state=seed, warm_start=True)
    else:
        if target.shape[1] != 1:
            raise InvalidModelError(
                f"the trees student reproduces one regression value, and this model has {target.shape[1]}; "
                "pick the mlp student")
        y = target[:, 0]
        model = GradientBoostingRegressor(n_estimators=_ROUND_STEP, max_depth=3, subsample=0.8,
                                          random_state=seed, warm_start=True)
    start = time.monotonic()
    while True:
        model.fit(x, y)
        rounds, elapsed = model.n_estimators, time.monotonic() - start
        progress(progress_line(f"training the trees student: boosting round {rounds} of {TREE_ROUNDS}",
                               max(rounds / TREE_ROUNDS, elapsed / budget)))
        if rounds >= TREE_ROUNDS or elapsed >= budget:
            break
        model.n_estimators = rounds + _ROUND_STEP
    core = _to_onnx(model, x.shape[1], classifier)
    stats = {"epochs": rounds, "planned_epochs": TREE_ROUNDS, "train_seconds_used": round(elapsed, 2),
             "stopped_by_budget": rounds < TREE_ROUNDS}
    return core, "probabilities" if classifier else "values", stats


def _to_onnx(model: Any, features: int, classifier: bool) -> onnx.ModelProto:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if classifier else None
    core = to_onnx(model, initial_types=[("student_input", FloatTensorType([None, features]))], options=options,
                   target_opset={"": 17, "ai.onnx.ml": 3})
    name = "probabilities" if classifier else "variable"
    keep = [o for o in core.graph.output if o.name == name]
    del core.graph.output[:]
    core.graph.output.extend(keep)
    return core
