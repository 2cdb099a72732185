"""The evaluation gate and the new methods' settings on the pages (AppTest): the Compare page's gate rules,
results and promote, distill's and int8-budgeted's inputs, progress bars, and the Models page's alias move."""

from __future__ import annotations

from pathlib import Path

from compare_fixtures import FEATURES, classifier_store, reference_frame
from streamlit.testing.v1 import AppTest
from ui_fixtures import (  # noqa: F401  (fixtures)
    assert_clean,
    button,
    elements_of_type,
    empty_home,
    new_app,
    select_model,
    texts,
)


from portal import Portal
from portal.compress.gate import Gate
from portal.compress.measure import VersionMeasurement, environment, save_run
from portal.compress.methods import DEFAULT_METHODS
from portal.compress.variants import load_comparison

PAGE = "app_pages/compare.py"




def _measurement(ref: str, method: str | None, accuracy: float) -> VersionMeasurement:
    p50 = 0.1 if method is None else 0.05
    latency = {b: {"p50_ms": p50 * f, "p95_ms": p50 * f, "mean_ms": p50 * f, "rounds": 100} for b, f in (("1", 1),
                                                                                                          ("32", 8))}
    agreement = {} if method is None else {"kind": "top-1", "value": 1.0, "rows": 40, "flipped_count": 0,
                                           "flipped": [], "max_abs_error": 0.0, "mean_abs_error": 0.0}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "m:1", size_bytes=4000,
                              gzip_bytes=4000, peak_rss_bytes=1, model_memory_bytes=1, load_seconds=0.01,
                              latency=latency, throughput_rows_s=1.0, agreement=agreement,
                              labels={"accuracy": accuracy})


def _gated(home: Path, *, variant_accuracy: float) -> None:
    """m:1 and a 2× faster int8-static variant m:2 (same answers) with a stored gate ``accuracy>=parent-0.01``."""
    portal = classifier_store(home)
    parent = portal.get("m:1")
    portal.registry.add_version("m", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
                                info=parent.info, meta=parent.meta, parent="m:1", method="int8-static",
                                reference_sha=parent.reference_sha)
    measurements = [_measurement("m:1", None, 0.9), _measurement("m:2", "int8-static", variant_accuracy)]
    gate = Gate.parse("accuracy>=parent-0.01")
    save_run(portal.registry.engine, measurements, environment=environment(), actor="tests",
             dataset={"sha": "0" * 64, "rows": 40, "source": "reference data of m:1", "label_column": "target"},
             extra={"refused": {}, "gate": gate.to_json(gate.evaluate(measurements))})
    portal.close()


def _compare_page() -> AppTest:
    return select_model(new_app(PAGE), "m", "v1")


# -- the new comparison's settings ---------------------------------------------------------------------
def test_the_methods_default_to_the_registry_and_the_opt_in_ones_show_their_settings(empty_home: Path) -> None:
    classifier_store(empty_home).close()
    at = new_app(PAGE)
    pills = at.pills(key="compare.methods")
    assert list(pills.value) == list(DEFAULT_METHODS)
    assert "distill" in pills.options and "int8-budgeted" in pills.options and "distill" not in pills.value
    labels = [w.label for w in [*at.selectbox, *at.number_input]]
    assert not [label for label in labels if label.startswith(("Distill", "int8-budgeted"))]
    pills.set_value(["distill", "int8-budgeted"])
    at.run()
    assert_clean(at)
    student = at.selectbox(key="compare.student")
    assert student.value == "auto" and student.options == ["auto", "mlp", "trees", "small-cnn",
                                                             "mobilenet_v3_small", "resnet18"]
    assert at.number_input(key="compare.train_seconds").value == 60
    assert at.number_input(key="compare.budget").value == 1.0
    at.pills(key="compare.methods").set_value(["int8-budgeted"])
    at.run()
    assert [w.key for w in at.number_input] == ["compare.budget"]


def test_the_gate_is_off_without_labels(empty_home: Path) -> None:
    classifier_store(empty_home, labelled=False).close()
    at = new_app(PAGE)
    assert at.text_area(key="compare.gate").disabled
    assert any("The gate is off. Needs labels: pick the label column" in c for c in texts(at.caption))


def test_a_comparison_with_gate_rules_shows_and_enforces_them(empty_home: Path) -> None:
    classifier_store(empty_home).close()
    at = new_app(PAGE)
    assert not at.text_area(key="compare.gate").disabled  # the reference data has a "target" column
    at.pills(key="compare.methods").set_value(["optimized"])
    at.text_area(key="compare.gate").set_value("accuracy>=parent-0.5\naccuracy>=1.01")
    button(at, "Create variants and compare").click()
    at.run(timeout=300)
    assert_clean(at)
    assert not at.error, texts(at.error)
    portal = Portal.open(empty_home)
    stored = load_comparison(portal, "m:1")
    portal.close()
    assert stored is not None and stored.gate_rules == ["accuracy >= parent - 0.5", "accuracy >= 1.01"]
    shown = " ".join(texts(at.markdown))
    assert "**Evaluation gate:** `accuracy >= parent - 0.5` · `accuracy >= 1.01`" in shown
    assert "**m:2** (optimized) fails the gate: accuracy >= 1.01: measured" in shown
    assert list(at.dataframe[0].value["Gate"]) == ["parent", "failed"]
    assert not [b for b in at.button if b.label == "Promote"]
    assert any("m:2 failed the evaluation gate." in c for c in texts(at.caption))


def test_a_bad_gate_rule_is_a_message_and_nothing_is_built(empty_home: Path) -> None:
    classifier_store(empty_home).close()
    at = new_app(PAGE)
    at.pills(key="compare.methods").set_value(["optimized"])
    at.text_area(key="compare.gate").set_value("f1>=0.9")
    button(at, "Create variants and compare").click()
    at.run(timeout=300)
    assert_clean(at)
    assert any("unknown metric 'f1' in gate rule 'f1>=0.9'" in e for e in texts(at.error))
    portal = Portal.open(empty_home)
    assert [v.version for v in portal.get_model("m").versions] == [1]
    portal.close()


# -- promote on the Compare page ----------------------------------------------------------------------
def test_a_variant_that_passed_its_gate_shows_it_before_promote(empty_home: Path) -> None:
    _gated(empty_home, variant_accuracy=0.895)
    at = _compare_page()
    assert_clean(at)
    assert any(s.startswith("m:2 passed the evaluation gate of the comparison of m:1") for s in texts(at.success))
    assert at.selectbox(key="compare.promote").value == "m:2"
    promote = button(at, "Promote")
    assert not promote.disabled
    promote.click()
    at.run()
    assert "@production now points at m:2." in texts(at.success)


def test_a_variant_that_failed_its_gate_is_not_offered(empty_home: Path) -> None:
    _gated(empty_home, variant_accuracy=0.85)
    at = _compare_page()
    assert_clean(at)
    assert "Every variant failed the evaluation gate (m:2): keep serving m:1." in texts(at.warning)
    assert ("**m:2** (int8-static) fails the gate: accuracy >= parent - 0.01: measured 0.8500, needed 0.8900 "
            "(parent 0.9000)") in " ".join(texts(at.markdown))
    assert not [b for b in at.button if b.label == "Promote"]
    assert any("m:2 failed the evaluation gate." in c for c in texts(at.caption))


# -- the Models page's Aliases tab ----------------------------------------------------------------------
def test_the_aliases_tab_shows_a_failed_gate_and_moves_only_with_the_override(empty_home: Path) -> None:
    _gated(empty_home, variant_accuracy=0.85)
    at = select_model(new_app("app_pages/models.py"), "m", "v1")
    at.selectbox(key="alias.version.m").select(2)
    at.run()
    assert_clean(at)
    assert any(e.startswith("m:2 failed the evaluation gate of the comparison of m:1") for e in texts(at.error))
    override = at.checkbox(key="alias.override.m")
    assert not override.value
    assert button(at, "Point alias").disabled  # the override first (the library refuses too: tests/test_gate.py)
    portal = Portal.open(empty_home)
    assert portal.get_model("m").aliases == {}
    portal.close()
    at.checkbox(key="alias.override.m").check()
    at.run()
    button(at, "Point alias").click()
    at.run()
    assert_clean(at)
    assert "@production now points at m:2 (its failed evaluation gate overridden)." in texts(at.success)
    portal = Portal.open(empty_home)
    assert portal.get("m@production").ref == "m:2"
    assert portal.registry.audit_log(action="alias.set", limit=1)[0].detail["gate_override"]["parent"] == "m:1"
    portal.close()


def test_the_aliases_tab_offers_no_override_for_a_version_without_a_failed_gate(empty_home: Path) -> None:
    _gated(empty_home, variant_accuracy=0.895)
    at = select_model(new_app("app_pages/models.py"), "m", "v1")
    at.selectbox(key="alias.version.m").select(2)
    at.run()
    assert any(s.startswith("m:2 passed the evaluation gate") for s in texts(at.success))
    assert not [c for c in at.checkbox if c.key == "alias.override.m"]
    at.selectbox(key="alias.version.m").select(1)
    at.run()
    assert not [s for s in texts(at.success) if "evaluation gate" in s]


# -- progress -----------------------------------------------------------------------------------------------
def _progress_script() -> None:
    from portal.compress.methods import progress_line
    from portal.ui.compare_settings import progress_writer

    write = progress_writer()
    write("calibration data: 40 rows")
    write(progress_line("training the student: epoch 1 of 4", 0.25))
    write(progress_line("training the student: epoch 3 of 4", 0.75))
    write("registered m:2")


def test_progress_lines_with_a_fraction_move_one_bar_and_plain_lines_are_written() -> None:
    at = AppTest.from_function(_progress_script).run()
    assert_clean(at)
    bars = elements_of_type(at, "progress")
    assert len(bars) == 1
    assert bars[0].proto.value == 75 and bars[0].proto.text == "training the student: epoch 3 of 4"
    assert texts(at.markdown) == [":material/check: calibration data: 40 rows", ":material/check: registered m:2"]
