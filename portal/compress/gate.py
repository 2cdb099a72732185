"""The evaluation gate: metric thresholds a variant must meet on a labelled set before it may be promoted.

    gate = Gate.parse("accuracy>=0.95\\naccuracy>=parent-0.01")    rules, absolute or relative to the parent
    gate.check(task="classification", labelled=True)              before any work: known metrics, labels given
    gate.evaluate(measurements)                                   after measuring: a GateResult per variant
    latest_gate(engine, "digits:2")                               the newest stored gated comparison of a variant

A rule is ``METRIC OP THRESHOLD``: METRIC one of :data:`METRICS` (what
:func:`portal.compress.agreement.label_metrics` measures), OP one of ``>= > <= <``,
THRESHOLD a number (``0.95`` or ``95%``) or relative to the parent: ``parent``,
``parent-0.01``, ``parent+0.1``, ``parent*0.98``. :func:`portal.compress.variants.compare`
stores the results with the run; ``Portal.set_alias`` refuses a variant whose latest
gated comparison it failed, unless told to override the gate.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..errors import InvalidInputError
from ..storage.db import MeasurementRow, ModelRow, VersionRow
from .measure import VersionMeasurement

__all__ = [
    "METRICS",
    "Gate",
    "GateResult",
    "Rule",
    "RuleCheck",
    "StoredGate",
    "gate_failures",
    "gate_refusal",
    "latest_gate",
    "stored_results",
]

# metric → the task that measures it (label_metrics: accuracy for classifiers, R² and MAE for numeric outputs)
METRICS: Mapping[str, str] = {"accuracy": "classification", "r2": "regression", "mae": "regression"}
_OPS: Mapping[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le,
                                                      "<": operator.lt}
_SPELLED = {"=>": ">=", "=<": "<="}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?"
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|=>|=<|>|<|==|=)?\s*(.*?)\s*$")
_THRESHOLD = re.compile(rf"^(?:(?P<parent>parent)\s*(?:(?P<op>[-+*])\s*(?P<by>{_NUMBER}))?|(?P<value>{_NUMBER}))$",
                        re.IGNORECASE)
_EXAMPLES = "e.g. accuracy>=0.95, accuracy>=parent-0.01, mae<=parent*1.05"
_EPS = 1e-12


def _number(text: str) -> float:
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


@dataclass(frozen=True)
class Rule:
    """One threshold: ``metric op value``, or ``metric op parent [+-*] value`` (``relative`` is then set)."""

    metric: str
    op: str
    value: float
    relative: str | None = None  # None: absolute; "+", "-" or "*" applied to the parent's value; "" the parent's own

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Read one rule such as ``accuracy>=parent-0.01``.

        Raises:
            InvalidInputError: not METRIC OP THRESHOLD, an unknown metric or operator, or a bad number.
        """
        found = _RULE.match(text)
        if not found or not found.group(3):
            raise InvalidInputError(f"invalid gate rule {text.strip()!r}: write METRIC OP THRESHOLD, {_EXAMPLES}")
        metric, op, rest = found.group(1).lower(), found.group(2), found.group(3)
        if metric not in METRICS:
            raise InvalidInputError(f"unknown metric {metric!r} in gate rule {text.strip()!r}: the gate can use "
                                    f"{', '.join(METRICS)}")
        op = _SPELLED.get(op or "", op or "")
        if op not in _OPS:
            raise InvalidInputError(f"invalid operator in gate rule {text.strip()!r}: use one of "
                                    f"{', '.join(_OPS)} ({_EXAMPLES})")
        threshold = _THRESHOLD.match(rest)
        if threshold is None:
            raise InvalidInputError(f"invalid threshold {rest!r} in gate rule {text.strip()!r}: give a number (0.95 "
                                    "or 95%) or one relative to the parent (parent, parent-0.01, parent*0.98)")
        if threshold.group("value") is not None:
            value = _number(threshold.group("value"))
            relative = None
        else:
            relative = threshold.group("op") or ""
            value = _number(threshold.group("by")) if relative else 0.0
        if not math.isfinite(value):
            raise InvalidInputError(f"invalid threshold {rest!r} in gate rule {text.strip()!r}: not a finite number")
        return cls(metric, op, value, relative)

    @property
    def text(self) -> str:
        if self.relative is None:
            return f"{self.metric} {self.op} {self.value:g}"
        return f"{self.metric} {self.op} parent" + (f" {self.relative} {self.value:g}" if self.relative else "")

    def threshold(self, parent: float | None) -> float | None:
        """The number the measured value is held to (None: relative, and the parent has no value)."""
        if self.relative is None:
            return self.value
        if parent is None:
            return None
        return {"": parent, "+": parent + self.value, "-": parent - self.value, "*": parent * self.value}[self.relative]

    def holds(self, measured: float, threshold: float) -> bool:
        """Whether ``measured`` meets ``threshold`` (a value equal to it up to rounding meets >= and <=)."""
        slack = _EPS if self.op in (">=", "<=") else 0.0
        return _OPS[self.op](measured, threshold - slack if self.op.startswith(">") else threshold + slack)


@dataclass(frozen=True)
class RuleCheck:
    """One rule checked on one variant: the value measured, the threshold, the parent's value."""

    rule: str
    metric: str
    measured: float | None
    threshold: float | None
    parent: float | None
    passed: bool

    @property
    def description(self) -> str:
        """``accuracy >= parent - 0.01: measured 0.9300, needed 0.9400 (parent 0.9500)``."""
        if self.measured is None:
            return f"{self.rule}: {self.metric} was not measured (the outputs do not give it)"
        if self.threshold is None:
            return f"{self.rule}: the parent has no {self.metric} to compare with"
        parent = f" (parent {self.parent:.4f})" if self.parent is not None else ""
        return f"{self.rule}: measured {self.measured:.4f}, needed {self.threshold:.4f}{parent}"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one variant: passed only when every rule holds."""

    ref: str
    method: str | None
    passed: bool
    checks: list[RuleCheck]

    @property
    def failed(self) -> list[RuleCheck]:
        return [c for c in self.checks if not c.passed]

    @property
    def reason(self) -> str:
        """Why it failed (every failed rule), or that every rule held."""
        if self.passed:
            return f"passes the evaluation gate ({len(self.checks)} rule(s))"
        return "; ".join(c.description for c in self.failed)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(str(data["ref"]), data.get("method"), bool(data["passed"]),
                   [RuleCheck(**c) for c in data.get("checks", [])])


@dataclass(frozen=True)
class Gate:
    """The rules a variant must all meet on the labelled evaluation set."""

    rules: tuple[Rule, ...]

    @classmethod
    def parse(cls, rules: str | Sequence[str] | Gate) -> Gate:
        """Rules from text (one per line, or separated by ``;``) or a list of rule strings.

        Raises:
            InvalidInputError: a rule is malformed, or there is none.
        """
        if isinstance(rules, Gate):
            return rules
        lines = [rules] if isinstance(rules, str) else [str(r) for r in rules]
        parts = [p.strip() for line in lines for p in re.split(r"[;\n]", line)]
        parsed = tuple(Rule.parse(p) for p in parts if p and not p.startswith("#"))
        if not parsed:
            raise InvalidInputError(f"the gate has no rules: give at least one, {_EXAMPLES}")
        return cls(parsed)

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.rules]

    def check(self, *, task: str, labelled: bool) -> None:
        """Refuse, before any work, a metric the model's task does not measure, or a set without labels.

        Raises:
            InvalidInputError: which rule and why, and how to fix it.
        """
        if task in ("classification", "regression"):
            known = [m for m, t in METRICS.items() if t == task]
            for rule in self.rules:
                if METRICS[rule.metric] != task:
                    raise InvalidInputError(f"gate rule {rule.text!r}: a {task} model is scored with "
                                            f"{', '.join(known)}, not {rule.metric}")
        if not labelled:
            raise InvalidInputError(
                "the gate needs a labelled evaluation set: pick the label column of the evaluation data "
                "(--label-column on the command line), or add reference data with a 'target' or 'label' column")

    def evaluate(self, measurements: Sequence[VersionMeasurement]) -> list[GateResult]:
        """Each variant of ``measurements[0]`` (the parent) held to every rule."""
        parent = measurements[0]
        return [self._evaluate(m, parent) for m in measurements[1:]]

    def _evaluate(self, m: VersionMeasurement, parent: VersionMeasurement) -> GateResult:
        checks = []
        for rule in self.rules:
            measured, base = _value(m.labels, rule.metric), _value(parent.labels, rule.metric)
            threshold = rule.threshold(base)
            passed = measured is not None and threshold is not None and rule.holds(measured, threshold)
            checks.append(RuleCheck(rule.text, rule.metric, measured, threshold, base, passed))
        return GateResult(m.ref, m.method, all(c.passed for c in checks), checks)

    def to_json(self, results: Sequence[GateResult]) -> dict[str, Any]:
        """What :func:`~portal.compress.variants.compare` stores with the run."""
        return {"rules": self.texts, "results": [r.to_json() for r in results]}


def _value(labels: Mapping[str, float], metric: str) -> float | None:
    value = labels.get(metric)
    return float(value) if value is not None and math.isfinite(float(value)) else None


def stored_results(extra: Mapping[str, Any]) -> dict[str, GateResult]:
    """The gate results a stored run holds, by variant reference (empty: the run had no gate)."""
    gate = extra.get("gate") or {}
    return {str(r["ref"]): GateResult.from_json(r) for r in gate.get("results", [])}


def gate_failures(results: Mapping[str, GateResult]) -> dict[str, str]:
    """The variants that failed, with why: what :func:`~portal.compress.advice.advise` takes as ``gate``."""
    return {ref: r.reason for ref, r in results.items() if not r.passed}


# -- the stored gate of a variant ------------------------------------------------------------
@dataclass(frozen=True)
class StoredGate:
    """A variant's result in the newest comparison of its parent that had a gate."""

    result: GateResult
    rules: list[str]
    parent: str
    run: str
    measured_at: dt.datetime

    def audit(self) -> dict[str, Any]:
        """What the audit trail records when an alias is moved to the variant despite a failed gate."""
        return {"run": self.run, "parent": self.parent, "measured_at": self.measured_at.isoformat(),
                "failed": [c.rule for c in self.result.failed]}


def gate_refusal(stored: StoredGate) -> str:
    """The message refusing to point an alias at a variant that failed its gate."""
    return (f"{stored.result.ref} failed the evaluation gate of the comparison of {stored.parent} measured "
            f"{stored.measured_at:%Y-%m-%d %H:%M} UTC: {stored.result.reason}. Promote a variant that passes, "
            "compare again, or override the gate deliberately (the override is recorded in the audit trail)")


def latest_gate(engine: Engine, ref: str) -> StoredGate | None:
    """The result of the variant ``ref`` (``name:N``) in the newest gated comparison it was measured in."""
    name, _, number = ref.rpartition(":")
    with Session(engine) as s:
        version_id = s.scalar(select(VersionRow.id).join(ModelRow, VersionRow.model_id == ModelRow.id)
                              .where(ModelRow.name == name, VersionRow.number == int(number)))
        if version_id is None:
            return None
        rows = s.scalars(select(MeasurementRow).where(MeasurementRow.version_id == version_id,
                                                      MeasurementRow.baseline_version_id.is_not(None))
                         .order_by(MeasurementRow.id.desc())).all()
        for row in rows:
            head = _head(s, row)
            if head is None:
                continue
            results = stored_results(head.results.get("extra", {}))
            if ref in results:
                parent = VersionMeasurement.from_json(head.results["measurement"]).ref
                return StoredGate(results[ref], list(head.results["extra"]["gate"].get("rules", [])), parent,
                                  str(row.results.get("run")), head.created_at)
    return None


def _head(s: Session, row: MeasurementRow) -> MeasurementRow | None:
    """The parent's row of the run ``row`` belongs to."""
    run = row.results.get("run")
    heads = s.scalars(select(MeasurementRow).where(MeasurementRow.version_id == row.baseline_version_id,
                                                   MeasurementRow.baseline_version_id.is_(None))
                      .order_by(MeasurementRow.id.desc())).all()
    return next((h for h in heads if h.results.get("run") == run and h.results.get("role") == "parent"), None)

