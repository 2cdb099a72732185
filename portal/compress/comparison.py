"""A comparison: a parent and its variants measured on one data set, with the advice.

:class:`Comparison` is what :func:`portal.compress.variants.compare` returns and
:func:`~portal.compress.variants.load_comparison` reads back: the stored run, the
advice (judged again with another tolerance or objective without re-measuring),
one table row per version, the rows whose class flipped, and the JSON the CLI
and API print.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from .advice import Advice, advise
from .gate import GateResult, gate_failures, stored_results
from .measure import StoredRun, VersionMeasurement

__all__ = ["Comparison"]


@dataclass(frozen=True)
class Comparison:
    """A parent and its variants measured on one data set, with the advice."""

    parent: str
    run: StoredRun
    advice: Advice

    @property
    def measurements(self) -> list[VersionMeasurement]:
        return self.run.measurements

    @property
    def refused(self) -> dict[str, str]:
        """Methods that were not created, with the reason."""
        return dict(self.run.extra.get("refused", {}))

    @property
    def notes(self) -> list[str]:
        """Caveats of the run (e.g. calibrated on the evaluation rows)."""
        return list(self.run.extra.get("notes", []))

    @property
    def gate(self) -> dict[str, GateResult]:
        """The evaluation gate's result per variant reference (empty: the comparison had no gate)."""
        return stored_results(self.run.extra)

    @property
    def gate_rules(self) -> list[str]:
        """The rules of the evaluation gate (empty: none)."""
        return list((self.run.extra.get("gate") or {}).get("rules", []))

    def with_advice(
        self, *, tolerance: float = 0.01, objective: str = "latency", batch: int | None = None
    ) -> Comparison:
        """The same figures judged with another tolerance or objective (nothing re-measured)."""
        return replace(self, advice=advise(self.measurements, tolerance=tolerance, objective=objective,
                                           batch=batch, environment=self.run.environment,
                                           gate=gate_failures(self.gate)))

    def table(self) -> pd.DataFrame:
        """One row per version (parent first): size, memory, latency, agreement, verdict (and gate, if any)."""
        gate = self.gate
        rows = [_table_row(m, self.measurements[0], self.advice) for m in self.measurements]
        if gate:
            for row in rows:
                found = gate.get(row["Version"])
                row["Gate"] = "parent" if row["Method"] == "parent" else (
                    "not gated" if found is None else "passed" if found.passed else "failed")
        return pd.DataFrame(rows)

    def flipped(self, ref: str) -> pd.DataFrame:
        """Rows whose class changes between the parent and ``ref`` (at most 200 kept)."""
        m = next((m for m in self.measurements if m.ref == ref), None)
        return pd.DataFrame(m.agreement.get("flipped", []) if m else [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent, "run": self.run.run, "measured_at": self.run.created_at.isoformat(),
            "environment": self.run.environment, "dataset": self.run.dataset, "refused": self.refused,
            "notes": self.notes,
            "gate": ({"rules": self.gate_rules, "results": [r.to_json() for r in self.gate.values()]}
                     if self.gate_rules else None),
            "measurements": [m.to_json() for m in self.measurements],
            "advice": {"objective": self.advice.objective, "tolerance": self.advice.tolerance,
                       "batch": self.advice.batch, "best": self.advice.best, "summary": self.advice.summary,
                       "verdicts": [v.__dict__ for v in self.advice.verdicts]},
        }


def _table_row(m: VersionMeasurement, parent: VersionMeasurement, advice: Advice) -> dict[str, Any]:
    verdict = advice.verdict(m.ref)
    row: dict[str, Any] = {"Version": m.ref, "Method": m.method or "parent", "Size": m.size_bytes,
                           "Size ratio": m.size_bytes / max(1, parent.size_bytes), "Gzip size": m.gzip_bytes,
                           "Peak memory": m.peak_rss_bytes, "Model memory": m.model_memory_bytes}
    for batch, stats in m.latency.items():
        row[f"p50 ms (batch {batch})"] = stats["p50_ms"]
        row[f"p95 ms (batch {batch})"] = stats["p95_ms"]
        base = parent.latency.get(batch)
        ratio = base["p50_ms"] / stats["p50_ms"] if base and stats["p50_ms"] else None
        row[f"Speedup (batch {batch})"] = stats.get("paired_speedup") or ratio
        if "ci_low" in stats:
            row[f"Speedup {stats.get('confidence', 0.99):.0%} interval (batch {batch})"] = (
                f"{stats['ci_low']:.2f}–{stats['ci_high']:.2f}×")
    row["Throughput rows/s"] = m.throughput_rows_s
    row["Agreement"] = m.agreement.get("value", 1.0) if m.method else 1.0
    row["Flipped rows"] = m.agreement.get("flipped_count", 0) if m.method else 0
    row["Max abs error"] = m.agreement.get("max_abs_error") if m.method else 0.0
    row["KL divergence"] = m.agreement.get("kl_divergence") if m.method else 0.0
    for key, value in m.labels.items():
        row[{"accuracy": "Accuracy", "r2": "R²", "mae": "MAE"}.get(key, key)] = value
    row["Verdict"] = verdict.status if verdict else "parent"
    return row
