"""The torch training loop every torch student shares: seeded, bounded by the time budget, with progress.

A classifier's student minimises the cross-entropy with the teacher's
probabilities (soft targets); a regressor's the squared error with its values
(standardised, so the loss does not depend on their scale). Equal inputs and an
equal number of epochs give the same student; the budget can stop training
before the last planned epoch on a slower or busier machine, and the
statistics say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..methods.base import progress_line

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """How training went."""

    epochs: int  # epochs run
    planned: int  # epochs planned
    seconds: float
    stopped_by_budget: bool
    loss: float  # mean loss of the last epoch


def fit(net: Any, x: np.ndarray, target: np.ndarray, *, soft: bool, epochs: int, budget: float, batch: int,
        lr: float, seed: int, label: str, progress: Callable[[str], None]) -> FitResult:
    """Train ``net`` on (``x``, ``target``) with Adam and a cosine schedule until ``epochs`` or ``budget`` s.

    ``label`` names the student in the progress lines ("the mlp student").
    """
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(target.astype(np.float32))
    steps_per_epoch = max(1, len(xs) // batch)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    start, shown, loss_value, done = time.monotonic(), -1.0, float("nan"), 0
    net.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(xs), generator=generator)
        total, ran = 0.0, 0
        for step in range(steps_per_epoch):  # the short last batch is dropped: BatchNorm needs two rows
            rows = order[step * batch:(step + 1) * batch]
            optimizer.zero_grad()
            loss = _loss(torch, net(xs[rows]), ys[rows], soft)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, ran = total + loss.item(), ran + 1
            if time.monotonic() - start >= budget:  # one epoch of a big network can outlast the budget
                break
        done, loss_value = epoch, total / ran
        elapsed = time.monotonic() - start
        fraction = max(epoch / epochs, elapsed / budget)
        if fraction - shown >= 0.02 or epoch == epochs:
            progress(progress_line(f"training {label}: epoch {epoch} of {epochs}", fraction))
            shown = fraction
        if elapsed >= budget:
            break
    net.eval()
    return FitResult(epochs=done, planned=epochs, seconds=time.monotonic() - start,
                     stopped_by_budget=done < epochs or ran < steps_per_epoch, loss=loss_value)


def _loss(torch: Any, output: Any, target: Any, soft: bool) -> Any:
    if soft:
        return -(target * torch.nn.functional.log_softmax(output, dim=1)).sum(dim=1).mean()
    return torch.nn.functional.mse_loss(output, target)
