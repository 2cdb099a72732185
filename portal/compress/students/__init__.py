"""Distillation students, trained in the sandboxed child: a smaller model taught by its parent's outputs.

The ``distill`` method (:mod:`portal.compress.methods.distill`) calls
:func:`train_student` in the child. The parent ONNX graph is the teacher: it is
run with onnxruntime on the rows handed to the build (the version's reference
data or the user's upload), enlarged with augmented rows it labels itself, and
the student learns its soft targets. The student file is a drop-in version: the
parent's input and output names, dtypes and shapes.

    teacher   read the parent's signature, refuse what cannot be distilled, run it, read its targets
    augment   enlarge the transfer set: jitter and mixup for rows, flips, shifts and noise for images
    fit       the seeded torch training loop, bounded by the time budget, reporting progress
    tabular   the "mlp" (torch) and "trees" (scikit-learn gradient boosting + skl2onnx) students
    image     the "small-cnn", "mobilenet_v3_small" and "resnet18" students (random init)
    export    torch → ONNX, and the adapter that gives the student its parent's inputs and outputs
    train     the whole build: pick, label, train, export, check, describe
"""

from __future__ import annotations

from .names import IMAGE_STUDENTS, STUDENTS, TABULAR_STUDENTS
from .train import train_student

__all__ = ["IMAGE_STUDENTS", "STUDENTS", "TABULAR_STUDENTS", "train_student"]
