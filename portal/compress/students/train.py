"""The distill build in the child: pick the student, label the transfer set, train, export, check.

    train_student(src=..., dst=..., scratch=..., params=..., job=..., progress=..., notes=...) → statistics

The teacher (the parent ONNX at ``src``) runs in onnxruntime here, in the
sandboxed child, on the rows of ``job["calibration"]`` and their augmented
neighbours; the student is written to ``dst`` with the parent's signature, run
once more on the given rows, and its agreement with the teacher reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import InvalidInputError, InvalidModelError
from ..arrays import load_arrays
from .augment import augment_images, augment_rows, transfer_size
from .export import adapt, torch_core
from .image import SMALL_CNN_MAX_SIDE, train_image
from .names import IMAGE_STUDENTS, TABULAR_STUDENTS
from .tabular import train_mlp, train_trees
from .teacher import Teacher, read_teacher

__all__ = ["EPOCHS", "SEED", "count_parameters", "train_student"]

SEED = 0
EPOCHS = {"mlp": 100, "small-cnn": 60, "mobilenet_v3_small": 30, "resnet18": 30}
_CPU_SHARE = 0.5  # of the sandbox's CPU-time limit, for training; labelling, imports and export take the rest
_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble")


def train_student(*, src: Path, dst: Path, scratch: Path, params: Mapping[str, Any], job: Mapping[str, Any],
                  progress: Callable[[str], None], notes: list[str]) -> dict[str, Any]:
    """Train the student of the parent at ``src`` and write it to ``dst``; return the build statistics.

    Raises:
        InvalidModelError: the parent or the chosen student cannot be distilled, or the export failed.
        InvalidInputError: the training rows do not fit the parent's input.
    """
    began = time.monotonic()
    threads = int(job.get("threads") or 0) or 1  # small kernels: more threads spin-wait on a busy machine
    parent = onnx.load(str(src))
    given = _rows(Path(job["calibration"]), parent)
    progress(f"reading the parent and running it on {min(64, len(given))} rows")
    teacher = read_teacher(src, given[:64], fixed_batch=job.get("fixed_batch"), threads=threads)
    given = _shaped(given, teacher)
    student = _pick(str(params["student"]), teacher, given, parent, notes)
    budget = _budget(float(params["train_seconds"]), job, int(job.get("threads") or 0) or _torch_threads(student),
                     notes)
    rng = np.random.default_rng(SEED)
    total = transfer_size(len(given), given[0].nbytes, teacher.rank)
    augment = augment_rows if teacher.rank in (2, 3) else augment_images
    transfer = augment(given, total, rng)
    progress(f"labelling {len(transfer)} rows with the parent ({len(given)} given, {len(transfer) - len(given)} "
             "augmented)")
    outs = teacher.run(transfer)
    target = teacher.targets(outs)
    if student == "trees":
        core, kind, fitted = train_trees(transfer, target, classifier=teacher.classifier, budget=budget, seed=SEED,
                                         progress=progress)
    else:
        import torch

        torch.set_num_threads(int(job.get("threads") or 0) or _torch_threads(student))
        trainer = train_mlp if student == "mlp" else _image_trainer(student)
        flat = teacher.rank == 3  # a sequence: the MLP sees it flattened, and its graph flattens it first
        net, result = trainer(transfer.reshape(len(transfer), -1) if flat else transfer, target,
                              classifier=teacher.classifier, epochs=EPOCHS[student], budget=budget, seed=SEED,
                              progress=progress)
        net = torch.nn.Sequential(torch.nn.Flatten(1), net) if flat else net
        progress("exporting the student to ONNX")
        core, kind = torch_core(net, transfer, scratch / "student-core.onnx"), "logits" if teacher.classifier else "values"
        fitted = {"epochs": result.epochs, "planned_epochs": result.planned,
                  "train_seconds_used": round(result.seconds, 2), "stopped_by_budget": result.stopped_by_budget}
    model = adapt(core, kind, teacher)
    onnx.save(model, str(dst))
    progress("running the student on the given rows")
    fit_to_parent = _fidelity(teacher, dst, given, [o[: len(given)] for o in outs])
    stats = {"student": student, **fitted, "budget_seconds": budget, "rows_given": len(given),
             "rows_trained": len(transfer), "augmented_rows": len(transfer) - len(given), **fit_to_parent,
             "parameters_parent": count_parameters(parent), "parameters_student": count_parameters(model),
             "seconds": round(time.monotonic() - began, 2)}
    notes.extend(_notes(stats, teacher))
    return stats


def _torch_threads(student: str) -> int:
    """One thread for the small students (measured: two threads ran an MLP step 25-100x slower on two busy
    cores); up to four for the torchvision networks, whose convolutions pay for them."""
    return 1 if student in ("mlp", "small-cnn") else min(4, os.cpu_count() or 1)


def _image_trainer(student: str) -> Callable[..., Any]:
    def trainer(x: np.ndarray, target: np.ndarray, **kwargs: Any) -> Any:
        return train_image(student, x, target, **kwargs)

    return trainer


def _rows(path: Path, parent: onnx.ModelProto) -> np.ndarray:
    arrays = load_arrays(path)
    inits = {i.name for i in parent.graph.initializer}
    names = [i.name for i in parent.graph.input if i.name not in inits]
    if len(names) == 1 and names[0] in arrays:
        return arrays[names[0]]
    if len(names) != 1:
        return next(iter(arrays.values()))  # read_teacher refuses the model with the reason
    raise InvalidInputError(f"the training rows hold {', '.join(arrays)}, and the model's input is {names[0]!r}")


def _shaped(x: np.ndarray, teacher: Teacher) -> np.ndarray:
    if x.dtype.kind not in "fiub":
        raise InvalidInputError(f"the training rows are {x.dtype}; distill trains on numbers only")
    dims = [d.dim_value for d in teacher.input.type.tensor_type.shape.dim[1:]]
    if x.ndim == 2 and teacher.rank == 4 and all(dims) and int(np.prod(dims)) == x.shape[1]:
        x = x.reshape(-1, *dims)
    if len(x) < 2:
        raise InvalidInputError(f"distill needs at least 2 rows to train on (got {len(x)}); upload more rows")
    return np.ascontiguousarray(x, np.float32)


_MOBILENET_V3_SMALL_PARAMETERS = 2_542_856  # torchvision's, 1,000 classes


def _pick(student: str, teacher: Teacher, x: np.ndarray, parent: onnx.ModelProto, notes: list[str]) -> str:
    """The student to train; "auto" picks by the parent's input (and, for rows, its operators)."""
    if teacher.rank == 3:
        if student not in ("auto", "mlp"):
            raise InvalidModelError(
                f"the {student} student does not fit sequences {list(x.shape[1:])}: this model takes "
                "[N, steps, features], which only the mlp student learns (over the flattened sequence); pick mlp "
                "(or auto)")
        if student == "auto":
            notes.append("student picked automatically: mlp (over the flattened sequence [N, steps, features])")
        return "mlp"
    if teacher.rank == 2:
        if student in IMAGE_STUDENTS:
            raise InvalidModelError(
                f"the {student} student is for images [N, C, H, W], and this model takes rows {list(x.shape[1:])}; "
                f"pick {' or '.join(TABULAR_STUDENTS)} (or auto)")
        if student == "auto":  # measured (bench/compression.py, 100-tree forest): the trees student ran at 0.76x /
            # 0.63x its parent's speed at batch 1 / 32, the mlp student at 0.73x / 2.1x, as faithful on held-out rows
            trees = any(n.op_type in _TREE_OPS for n in parent.graph.node)
            student = "mlp"
            notes.append("student picked automatically: mlp (a small network runs faster in onnxruntime than "
                         + ("a tree ensemble such as the parent; pick trees for a student of trees)" if trees
                            else "trees would)"))
        return student
    if student in TABULAR_STUDENTS:
        raise InvalidModelError(
            f"the {student} student is for rows [N, features], and this model takes images {list(x.shape[1:])}; "
            f"pick {', '.join(IMAGE_STUDENTS)} (or auto)")
    if student == "auto":
        small = max(x.shape[2:]) <= SMALL_CNN_MAX_SIDE
        # a student as big as its parent saves nothing: mobilenet_v3_small only for parents well above its size
        light = count_parameters(parent) < 2 * _MOBILENET_V3_SMALL_PARAMETERS
        student = "small-cnn" if small or light else "mobilenet_v3_small"
        why = ("are small" if small else f"come from a parent of under {2 * _MOBILENET_V3_SMALL_PARAMETERS:,} "
               "parameters, which mobilenet_v3_small would not shrink" if light
               else f"are larger than {SMALL_CNN_MAX_SIDE}x{SMALL_CNN_MAX_SIDE}")
        notes.append(f"student picked automatically: {student} (images of {x.shape[2]}x{x.shape[3]} {why})")
    return student


def _budget(wanted: float, job: Mapping[str, Any], threads: int, notes: list[str]) -> float:
    cpu = float((job.get("limits") or {}).get("cpu_seconds") or 0)
    allowed = _CPU_SHARE * cpu / threads if cpu else wanted
    if wanted > allowed:
        notes.append(f"training stopped after {allowed:.0f} s instead of the {wanted:g} s asked, so that the "
                     f"sandbox's CPU-time limit ({cpu:.0f} s over {threads} thread(s)) is not reached; raise "
                     "PORTAL_SANDBOX_CPU_S to train longer")
        return allowed
    return wanted


def _fidelity(teacher: Teacher, path: Path, x: np.ndarray, parent_outs: list[np.ndarray]) -> dict[str, Any]:
    """How closely the written student follows the parent on the given rows."""
    student = Teacher(path=path, input=teacher.input, outputs=teacher.outputs, kinds=teacher.kinds,
                      classes=teacher.classes, fixed_batch=teacher.fixed_batch, threads=teacher.threads)
    outs = student.run(x)
    if teacher.classifier:
        return {"train_agreement": round(float((teacher.top1(parent_outs) == student.top1(outs)).mean()), 4)}
    want, got = teacher.targets(parent_outs), student.targets(outs)
    spread = float(((want - want.mean(axis=0)) ** 2).sum())
    return {"train_r2": round(1.0 - float(((want - got) ** 2).sum()) / spread, 4) if spread else None}


def count_parameters(model: onnx.ModelProto) -> int:
    """Weights of the graph: initializer elements, plus the nodes of tree ensembles and linear ml models."""
    total = sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type != onnx.TensorProto.STRING)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in ("nodes_nodeids", "coefficients", "intercepts"):
                total += len(attr.ints) + len(attr.floats)
    return total


def _notes(stats: Mapping[str, Any], teacher: Teacher) -> list[str]:
    fit = (f"agrees with its parent on {stats['train_agreement']:.1%} of the {stats['rows_given']} rows it was "
           "trained on (held-out agreement is lower: compare on other rows)" if "train_agreement" in stats else
           f"follows its parent with R² {stats['train_r2']} on the {stats['rows_given']} rows it was trained on")
    notes = [f"{stats['student']} student trained for {stats['epochs']} "
             f"{'boosting rounds' if stats['student'] == 'trees' else 'epochs'} ({stats['train_seconds_used']:g} s) "
             f"on {stats['rows_trained']} rows ({stats['rows_given']} given, {stats['augmented_rows']} augmented "
             f"and labelled by the parent); it {fit}",
             f"{stats['parameters_student']:,} parameters against the parent's {stats['parameters_parent']:,}"]
    if stats["stopped_by_budget"]:
        notes.append(f"the training budget ({stats['budget_seconds']:g} s) ran out before the "
                     f"{stats['planned_epochs']} planned {'rounds' if stats['student'] == 'trees' else 'epochs'}; "
                     "raise train_seconds for a closer student")
    if stats["parameters_student"] >= stats["parameters_parent"]:
        notes.append("the student is not smaller than its parent; pick a smaller student for a smaller, faster variant")
    return notes
