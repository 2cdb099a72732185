"""distill: a smaller student trained in the sandbox on its parent's outputs (knowledge distillation).

The parent is the teacher: the child runs it with onnxruntime on the rows the
build gets (the version's reference data, or rows the user uploads, like
int8-static's calibration data), adds augmented neighbours that the teacher
labels too, and trains the student on the teacher's probabilities (or values)
within ``train_seconds``. The student takes the parent's input and gives its
outputs (names, dtypes, shapes), so predict, explain, REST and the comparison
work on it unchanged. Students (:mod:`portal.compress.students`):

    mlp, trees                               rows [N, features] ("auto": mlp, faster than trees in onnxruntime)
    mlp                                      sequences [N, steps, features], flattened first
    small-cnn, mobilenet_v3_small, resnet18  images [N, C, H, W] ("auto": small-cnn up to 32x32)

Documented floors (tests/test_distill.py), top-1 agreement with the parent on
held-out rows after 3-6 s of training on 2 busy CPU cores: a 50-tree random forest
on breast cancer taught with its 200 reference rows, mlp or trees student: 97%
measured, floor 90% on the other 369 rows; the demo digits CNN taught with its 200
reference digits, small-cnn student: 96% measured, floor 85% on the other 1,597 digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ...errors import InvalidInputError, InvalidModelError
from ..students.names import IMAGE_STUDENTS, MAX_TRAIN_SECONDS, STUDENTS
from .base import Method, MethodAdvice, Work, ml_operators

__all__ = ["DISTILL"]


def _check(params: dict[str, Any]) -> dict[str, Any]:
    student = str(params["student"]).strip().lower().replace("-", "_") if params["student"] is not None else ""
    names = {s.replace("-", "_"): s for s in STUDENTS}
    if student not in names:
        raise InvalidInputError(f"invalid student {params['student']!r} for distill: expected one of {', '.join(STUDENTS)}")
    params["student"] = names[student]
    value = params["train_seconds"]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"train_seconds must be a number of seconds, e.g. 60 (not {value!r})") from None
    if not 0.0 < seconds <= MAX_TRAIN_SECONDS:
        raise InvalidInputError(
            f"train_seconds must be more than 0 and at most {MAX_TRAIN_SECONDS:g} (one hour), e.g. 60 (not {value!r})")
    params["train_seconds"] = seconds
    return params


def _applies(ops: Mapping[str, int], params: Mapping[str, Any]) -> None:
    ml_ops = ml_operators(ops)
    if "ZipMap" in ml_ops:
        raise InvalidModelError(
            "distill does not apply: the model's outputs go through ZipMap (a list of dicts, not a tensor), which "
            "a student cannot reproduce; re-export the model with plain tensor outputs (skl2onnx: zipmap=False)")
    if ml_ops and params["student"] in IMAGE_STUDENTS:
        raise InvalidModelError(
            f"distill with the {params['student']} student does not apply: that student is for images, and this "
            f"is a scikit-learn model of rows ({', '.join(ml_ops[:3])}); pick mlp, trees or auto")


def _build(w: Work) -> dict[str, Any]:
    from ..students import train_student  # the child's: torch and scikit-learn load only where training runs

    return train_student(src=w.src, dst=w.dst, scratch=w.scratch, params=w.params, job=w.job, progress=w.progress,
                         notes=w.notes)


def _hint(params: Mapping[str, Any]) -> str:
    return (f"raise the training budget (now {float(params.get('train_seconds', 60)):g} s), upload more rows to "
            f"train on, or pick a bigger student (now {params.get('student', 'auto')})")


def _slower(ops: Mapping[str, int], env: Mapping[str, Any]) -> str:
    if any(op.endswith("TreeEnsembleClassifier") or op.endswith("TreeEnsembleRegressor") for op in ops):
        return ("Slower: the gradient-boosted trees walk up to 200 rounds of trees (one per class for several "
                "classes) for every row; pick the mlp student, or lower the budget for fewer rounds.")
    return ("Slower: the student costs more arithmetic per row than its parent (it is not a smaller network); "
            "pick a smaller student (mlp for rows, small-cnn for small images).")


DISTILL = Method(
    name="distill",
    help="train a smaller student on the parent's outputs (knowledge distillation)",
    defaults=MappingProxyType({"student": "auto", "train_seconds": 60.0}),
    check=_check,
    applies=_applies,
    build=_build,
    advice=MethodAdvice(accuracy_hint=_hint, slower=_slower),
    color="#0891b2",
    compare_options=("student", "train_seconds"),
    calibrated=True,
    data_rows=5000,
    data_use="train the student on",
    default=False,
)
