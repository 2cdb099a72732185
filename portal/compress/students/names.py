"""The student architectures distillation offers, by the kind of model they stand in for."""

from __future__ import annotations

__all__ = ["IMAGE_STUDENTS", "MAX_TRAIN_SECONDS", "STUDENTS", "TABULAR_STUDENTS"]

TABULAR_STUDENTS = ("mlp", "trees")  # rows [N, features]: a small torch MLP, or gradient-boosted trees
IMAGE_STUDENTS = ("small-cnn", "mobilenet_v3_small", "resnet18")  # images [N, C, H, W]
STUDENTS = ("auto", *TABULAR_STUDENTS, *IMAGE_STUDENTS)  # "auto" picks by the parent's input
MAX_TRAIN_SECONDS = 3600.0
