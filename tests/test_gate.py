"""The evaluation gate (issue 18 item 4): rules parsed and held to, stored with the comparison, honoured by the
advice, and enforced when an alias moves, in the library, over REST and on the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tiny import add_model, softmax_classifier
from variant_models import add_mlp

from portal import Portal
from portal.accounts.auth import Auth
from portal.api import ApiSettings, create_app
from portal.compress.advice import GATE_FAILED, advise
from portal.compress.gate import Gate, Rule, latest_gate
from portal.compress.measure import VersionMeasurement, environment, save_run
from portal.compress.variants import compare, load_comparison
from portal.errors import ConflictError, InvalidInputError

FEATURES = ["a", "b", "c", "d"]


# -- parsing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "metric", "op", "value", "relative", "shown"), [
    ("accuracy>=0.95", "accuracy", ">=", 0.95, None, "accuracy >= 0.95"),
    ("accuracy >= 95%", "accuracy", ">=", 0.95, None, "accuracy >= 0.95"),
    ("accuracy>=parent-0.01", "accuracy", ">=", 0.01, "-", "accuracy >= parent - 0.01"),
    ("r2 > parent * 0.98", "r2", ">", 0.98, "*", "r2 > parent * 0.98"),
    ("MAE<=parent+0.5", "mae", "<=", 0.5, "+", "mae <= parent + 0.5"),
    ("mae =< parent", "mae", "<=", 0.0, "", "mae <= parent"),
])
def test_rules_are_read_absolute_or_relative_to_the_parent(text, metric, op, value, relative, shown) -> None:
    rule = Rule.parse(text)
    assert (rule.metric, rule.op, rule.relative) == (metric, op, relative)
    assert rule.value == pytest.approx(value)
    assert rule.text == shown


def test_thresholds_follow_the_parent() -> None:
    assert Rule.parse("accuracy>=parent-0.01").threshold(0.95) == pytest.approx(0.94)
    assert Rule.parse("mae<=parent*1.1").threshold(2.0) == pytest.approx(2.2)
    assert Rule.parse("accuracy>=0.9").threshold(None) == 0.9
    assert Rule.parse("accuracy>=parent").threshold(None) is None


@pytest.mark.parametrize(("text", "fragment"), [
    ("f1_macro>=0.9", "unknown metric 'f1_macro' in gate rule 'f1_macro>=0.9': the gate can use accuracy, r2, mae"),
    ("accuracy=0.9", "invalid operator in gate rule 'accuracy=0.9': use one of >=, >, <=, <"),
    ("accuracy!=0.9", "invalid operator in gate rule 'accuracy!=0.9'"),
    ("accuracy>=high", "invalid threshold 'high' in gate rule 'accuracy>=high': give a number (0.95 or 95%)"),
    ("accuracy>=parent/2", "invalid threshold 'parent/2'"),
    ("accuracy", "invalid gate rule 'accuracy': write METRIC OP THRESHOLD"),
])
def test_a_bad_rule_says_what_is_wrong(text, fragment) -> None:
    with pytest.raises(InvalidInputError) as err:
        Gate.parse(text)
    assert fragment in str(err.value)


def test_rules_come_one_per_line_or_separated_by_semicolons() -> None:
    gate = Gate.parse("accuracy>=0.9\n\n# a comment\naccuracy>=parent-0.02; accuracy < 1")
    assert gate.texts == ["accuracy >= 0.9", "accuracy >= parent - 0.02", "accuracy < 1"]
    assert Gate.parse(["accuracy>=0.9", "accuracy>=parent"]).texts == ["accuracy >= 0.9", "accuracy >= parent"]
    with pytest.raises(InvalidInputError, match="the gate has no rules"):
        Gate.parse(" \n ")


def test_a_metric_the_task_does_not_measure_or_a_set_without_labels_is_refused() -> None:
    with pytest.raises(InvalidInputError) as err:
        Gate.parse("mae<=0.5").check(task="classification", labelled=True)
    assert "a classification model is scored with accuracy, not mae" in str(err.value)
    with pytest.raises(InvalidInputError) as err:
        Gate.parse("accuracy>=0.5").check(task="regression", labelled=True)
    assert "a regression model is scored with r2, mae, not accuracy" in str(err.value)
    with pytest.raises(InvalidInputError, match="the gate needs a labelled evaluation set: pick the label column"):
        Gate.parse("accuracy>=0.5").check(task="classification", labelled=False)
    Gate.parse("mae<=0.5").check(task="other", labelled=True)  # an "other" model may give either


# -- evaluation and the advice ------------------------------------------------------------------------
def _measurement(ref: str, method: str | None, labels: dict[str, float], *, speedup: float = 2.0) -> VersionMeasurement:
    p50 = 1.0 if method is None else 1.0 / speedup
    latency = {"1": {"p50_ms": p50, "p95_ms": p50, "mean_ms": p50, "rounds": 400},
               "32": {"p50_ms": 8 * p50, "p95_ms": 8 * p50, "mean_ms": 8 * p50, "rounds": 400}}
    agreement = {} if method is None else {"kind": "top-1", "value": 0.995, "rows": 200, "flipped_count": 1,
                                           "flipped": [], "max_abs_error": 0.1, "mean_abs_error": 0.01}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "m:1", size_bytes=4000,
                              gzip_bytes=4000, peak_rss_bytes=1, model_memory_bytes=1, load_seconds=0.01,
                              latency=latency, throughput_rows_s=1.0, agreement=agreement, labels=labels)


PARENT = _measurement("m:1", None, {"accuracy": 0.95})


def test_each_variant_is_held_to_every_rule_with_the_values_shown() -> None:
    gate = Gate.parse(["accuracy>=parent-0.01", "accuracy>=0.9"])
    close, far = _measurement("m:2", "int8-static", {"accuracy": 0.945}), _measurement("m:3", "prune", {"accuracy": 0.9})
    passed, failed = gate.evaluate([PARENT, close, far])
    assert passed.passed and passed.ref == "m:2" and passed.failed == []
    assert not failed.passed and [c.rule for c in failed.failed] == ["accuracy >= parent - 0.01"]
    check = failed.checks[0]
    assert (check.measured, check.parent) == (0.9, 0.95) and check.threshold == pytest.approx(0.94)
    assert failed.reason == "accuracy >= parent - 0.01: measured 0.9000, needed 0.9400 (parent 0.9500)"
    assert failed.checks[1].passed  # 0.9 >= 0.9: a value on the threshold meets it


def test_a_metric_not_measured_fails_its_rule() -> None:
    result, = Gate.parse("r2>=0.5").evaluate([_measurement("m:1", None, {}), _measurement("m:2", "fp16", {})])
    assert not result.passed
    assert result.reason == "r2 >= 0.5: r2 was not measured (the outputs do not give it)"


def test_the_advice_never_recommends_a_variant_that_failed_the_gate() -> None:
    fast = _measurement("m:2", "int8-static", {"accuracy": 0.90}, speedup=3.0)
    slower_but_accurate = _measurement("m:3", "optimized", {"accuracy": 0.95}, speedup=1.5)
    assert advise([PARENT, fast, slower_but_accurate]).best == "m:2"  # without the gate: the fastest
    advice = advise([PARENT, fast, slower_but_accurate], gate={"m:2": "accuracy >= 0.93: measured 0.9000"})
    assert advice.best == "m:3"
    verdict = advice.verdict("m:2")
    assert verdict.status == GATE_FAILED and not verdict.promotable
    assert verdict.headline == "accuracy >= 0.93: measured 0.9000."
    assert verdict.reasons[-1] == "Failed the evaluation gate: accuracy >= 0.93: measured 0.9000."
    assert advice.summary.endswith("Failed the evaluation gate, so not offered: m:2.")


# -- a real comparison ----------------------------------------------------------------------------------
def test_compare_stores_the_gate_and_the_advice_honours_it(portal: Portal) -> None:
    add_mlp(portal)  # breast-cancer MLP with 200 labelled reference rows ("target")
    comparison = compare(portal, "mlp:1", methods=["int8-dynamic"], budget_seconds=0.2,
                         gate=["accuracy>=parent-0.05", "accuracy>=1.01"])
    parent, variant = comparison.measurements
    result = comparison.gate["mlp:2"]
    assert not result.passed and [c.passed for c in result.checks] == [True, False]
    assert result.checks[0].measured == variant.labels["accuracy"]
    assert result.checks[0].threshold == pytest.approx(parent.labels["accuracy"] - 0.05)
    assert result.checks[1].threshold == pytest.approx(1.01)
    assert comparison.advice.verdict("mlp:2").status == GATE_FAILED and comparison.advice.best is None
    assert comparison.advice.summary == "Every variant failed the evaluation gate (mlp:2): keep serving mlp:1."
    stored = load_comparison(portal, "mlp:1")
    assert stored is not None and stored.gate_rules == ["accuracy >= parent - 0.05", "accuracy >= 1.01"]
    assert stored.gate["mlp:2"] == result
    assert stored.advice.verdict("mlp:2").status == GATE_FAILED
    assert stored.with_advice(tolerance=0.5).advice.verdict("mlp:2").status == GATE_FAILED
    assert list(stored.table()["Gate"]) == ["parent", "failed"]
    as_json = stored.to_dict()["gate"]
    assert as_json["rules"] == stored.gate_rules and as_json["results"][0]["passed"] is False


def test_a_gate_is_checked_before_any_variant_is_built(portal: Portal) -> None:
    add_mlp(portal)
    unlabelled = portal.reference_frame("mlp:1").drop(columns=["target"])
    with pytest.raises(InvalidInputError, match="the gate needs a labelled evaluation set"):
        compare(portal, "mlp:1", data=unlabelled, methods=["int8-dynamic"], gate="accuracy>=0.9")
    with pytest.raises(InvalidInputError, match="scored with accuracy, not r2"):
        compare(portal, "mlp:1", methods=["int8-dynamic"], gate="r2>=0.9")
    with pytest.raises(InvalidInputError, match="unknown metric 'auc'"):
        compare(portal, "mlp:1", methods=["int8-dynamic"], gate="auc>=0.9")
    assert [v.version for v in portal.get_model("mlp").versions] == [1]
    assert load_comparison(portal, "mlp:1") is None


# -- the alias move ---------------------------------------------------------------------------------------
def _gated_store(portal: Portal, *, variant_accuracy: float, gate: str = "accuracy>=parent-0.01") -> None:
    """m:1 and its int8-static variant m:2, with a stored comparison whose gate the variant passes or fails."""
    add_model(portal, softmax_classifier(), "m", task="classification", feature_names=FEATURES,
              class_labels=["red", "green", "blue"])
    parent = portal.get("m:1")
    portal.registry.add_version("m", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
                                info=parent.info, meta=parent.meta, parent="m:1", method="int8-static")
    measurements = [PARENT, _measurement("m:2", "int8-static", {"accuracy": variant_accuracy})]
    rules = Gate.parse(gate)
    save_run(portal.registry.engine, measurements, environment=environment(), actor="tests",
             dataset={"sha": "0" * 64, "rows": 200, "source": "labelled rows", "label_column": "target"},
             extra={"refused": {}, "gate": rules.to_json(rules.evaluate(measurements))})


def test_a_variant_that_failed_its_gate_is_refused_unless_overridden(portal: Portal) -> None:
    _gated_store(portal, variant_accuracy=0.90)
    stored = latest_gate(portal.registry.engine, "m:2")
    assert stored is not None and stored.parent == "m:1" and not stored.result.passed
    with pytest.raises(ConflictError) as err:
        portal.set_alias("m:2", "production")
    message = str(err.value)
    assert message.startswith("m:2 failed the evaluation gate of the comparison of m:1 measured "
                              f"{stored.measured_at:%Y-%m-%d %H:%M} UTC: accuracy >= parent - 0.01: measured 0.9000, "
                              "needed 0.9400 (parent 0.9500)")
    assert "override the gate" in message
    assert portal.get_model("m").aliases == {}
    assert portal.set_alias("m:2", "production", override_gate=True).ref == "m:2"
    event = portal.registry.audit_log(action="alias.set", limit=1)[0]
    assert event.detail["version"] == 2
    assert event.detail["gate_override"]["failed"] == ["accuracy >= parent - 0.01"]
    assert event.detail["gate_override"]["run"] == stored.run


def test_a_variant_that_passed_or_was_never_gated_moves_as_before(portal: Portal) -> None:
    _gated_store(portal, variant_accuracy=0.945)
    assert portal.set_alias("m:2", "production").ref == "m:2"
    assert "gate_override" not in portal.registry.audit_log(action="alias.set", limit=1)[0].detail
    parent = portal.get("m:1")
    portal.registry.add_version("m", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
                                info=parent.info, meta=parent.meta, parent="m:1", method="fp16")
    assert latest_gate(portal.registry.engine, "m:3") is None
    assert portal.set_alias("m:3", "canary").ref == "m:3"
    assert portal.set_alias("m:1", "production").ref == "m:1"  # the parent is never gated


def test_the_latest_gated_comparison_decides(portal: Portal) -> None:
    _gated_store(portal, variant_accuracy=0.90)
    measurements = [PARENT, _measurement("m:2", "int8-static", {"accuracy": 0.90})]
    rules = Gate.parse("accuracy>=0.85")  # a later comparison with a looser gate, which it passes
    save_run(portal.registry.engine, measurements, environment=environment(), actor="tests",
             dataset={"sha": "1" * 64, "rows": 200, "source": "labelled rows", "label_column": "target"},
             extra={"refused": {}, "gate": rules.to_json(rules.evaluate(measurements))})
    assert latest_gate(portal.registry.engine, "m:2").result.passed
    assert portal.set_alias("m:2", "production").ref == "m:2"


def _put(app, path: str, body: dict, token: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.put(path, json=body, headers={"Authorization": f"Bearer {token}"})

    return asyncio.run(call())


def test_rest_refuses_a_failed_gate_with_409_and_takes_an_override(portal: Portal) -> None:
    _gated_store(portal, variant_accuracy=0.90)
    auth = Auth(portal.registry)
    auth.add_user("ana", "admin", actor="test")
    token = auth.create_token("ana", actor="test", label="tests").secret
    app = create_app(portal, settings=ApiSettings())
    refused = _put(app, "/api/models/m/aliases/production", {"version": 2}, token)
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("m:2 failed the evaluation gate of the comparison of m:1")
    moved = _put(app, "/api/models/m/aliases/production", {"version": 2, "override_gate": True}, token)
    assert moved.status_code == 200 and moved.json()["ref"] == "m:2"
    event = portal.registry.audit_log(action="alias.set", limit=1)[0]
    assert event.actor == "ana" and event.detail["gate_override"]["parent"] == "m:1"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_alias_refuses_a_failed_gate_unless_overridden(portal: Portal) -> None:
    _gated_store(portal, variant_accuracy=0.90)
    refused = _cli(portal.home, "alias", "m:2", "production")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "m:2 failed the evaluation gate of the comparison of m:1" in refused.stderr
    moved = _cli(portal.home, "alias", "m:2", "production", "--override-gate")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "m@production → m:2"


def test_cli_compare_takes_gate_rules_and_prints_the_results(portal: Portal) -> None:
    add_mlp(portal)
    result = _cli(portal.home, "compare", "mlp:1", "--methods", "int8-dynamic", "--gate", "accuracy>=parent-0.05",
                  "--gate", "accuracy>=1.01", "--json")
    assert result.returncode == 0, result.stderr
    gate = json.loads(result.stdout)["gate"]
    assert gate["rules"] == ["accuracy >= parent - 0.05", "accuracy >= 1.01"]
    assert [r["ref"] for r in gate["results"]] == ["mlp:2"] and gate["results"][0]["passed"] is False
    text = _cli(portal.home, "compare", "mlp:1", "--stored")
    assert "evaluation gate: accuracy >= parent - 0.05; accuracy >= 1.01" in text.stdout
    assert "mlp:2: FAILED (accuracy >= 1.01: measured" in text.stdout
    bad = _cli(portal.home, "compare", "mlp:1", "--methods", "int8-dynamic", "--gate", "auc>=0.9")
    assert bad.returncode == 1 and "unknown metric 'auc'" in bad.stderr and "Traceback" not in bad.stderr
