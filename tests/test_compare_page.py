"""The Compare page (AppTest): empty states, a real run, stored results, advice, flipped rows, promote."""

from __future__ import annotations

from pathlib import Path

from compare_fixtures import FEATURES, classifier_store, reference_frame
from sqlalchemy import func, select
from tiny import add_model, softmax_classifier
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
from portal.storage.db import MeasurementRow
from portal.compress.measure import VersionMeasurement, environment, save_run
from portal.compress.variants import load_comparison

PAGE = "app_pages/compare.py"




def _measurement(
    ref: str, method: str | None, p50: float, size: int, agree: float, flipped: list[dict]
) -> VersionMeasurement:
    latency = {b: {"p50_ms": p50 * f, "p95_ms": p50 * f * 1.2, "mean_ms": p50 * f, "rounds": 100}
               for b, f in (("1", 1), ("32", 8))}
    agreement = {} if method is None else {"kind": "top-1", "value": agree, "rows": 40, "flipped_count": len(flipped),
                                           "flipped": flipped, "max_abs_error": 0.1, "mean_abs_error": 0.01,
                                           "kl_divergence": 0.001}
    return VersionMeasurement(ref=ref, method=method, parent=None if method is None else "m:1", size_bytes=size,
                              gzip_bytes=size, peak_rss_bytes=50_000_000, model_memory_bytes=2_000_000,
                              load_seconds=0.01, latency=latency, throughput_rows_s=32 / (p50 * 8e-3),
                              agreement=agreement, labels={"accuracy": 0.9})


def _stored_comparison(home: Path) -> None:
    """m:1 with an int8-static variant m:2 that is 2× faster and flips one row of 40 (97.5% agreement)."""
    portal = classifier_store(home)
    parent = portal.get("m:1")
    portal.registry.add_version("m", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
                                info=parent.info, meta=parent.meta, parent="m:1", method="int8-static",
                                reference_sha=parent.reference_sha)
    flipped = [{"row": 5, "parent": "green", "variant": "blue", "parent_confidence": 0.51, "variant_confidence": 0.5}]
    measurements = [_measurement("m:1", None, 0.1, 4000, 1.0, []),
                    _measurement("m:2", "int8-static", 0.05, 1200, 0.975, flipped)]
    dataset = {"sha": "0" * 64, "rows": 40, "source": "reference data of m:1", "label_column": "target"}
    save_run(portal.registry.engine, measurements, dataset=dataset, environment=environment(),
             extra={"refused": {"fp16": "fp16 does not apply: because"}}, actor="tests")
    portal.close()


def _open_parent(at):
    return select_model(at, "m", "v1")


def _measurement_rows(home: Path) -> int:
    portal = Portal.open(home)
    with portal.registry.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(MeasurementRow)).scalar()
    portal.close()
    return int(count or 0)


def test_page_renders_on_an_empty_store(empty_home: Path) -> None:
    at = new_app(PAGE)
    assert_clean(at)
    assert "No models yet" in " ".join(texts(at.info))


def test_a_model_never_compared_invites_a_first_comparison(empty_home: Path) -> None:
    classifier_store(empty_home).close()
    at = new_app(PAGE)
    assert_clean(at)
    assert "m:1 has not been compared yet" in " ".join(texts(at.info))
    assert not button(at, "Create variants and compare").disabled


def test_running_a_comparison_from_the_page_stores_and_shows_it(empty_home: Path) -> None:
    classifier_store(empty_home).close()
    at = new_app(PAGE)
    at.pills(key="compare.methods").set_value(["optimized"])
    button(at, "Create variants and compare").click()
    at.run(timeout=300)
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert "Compared 1 method(s) on m:1; the figures are stored." in texts(at.success)
    table = at.dataframe[0].value
    assert list(table["Version"]) == ["m:1", "m:2"] and list(table["Method"]) == ["parent", "optimized"]
    assert table["Agreement"].tolist() == [1.0, 1.0]
    assert _measurement_rows(empty_home) == 2


def test_a_variant_points_back_to_its_parent(empty_home: Path) -> None:
    _stored_comparison(empty_home)
    at = select_model(new_app(PAGE), "m", "v2")  # issue 14 item 5: "latest" stays m:1, the variant is picked by number
    assert "m:2 is a variant of m:1 (int8-static)." in " ".join(texts(at.info))
    button(at, "Open m:1").click()
    at.run()
    assert_clean(at)
    assert at.markdown[0].value == "#### m:1" and len(at.dataframe) == 2 + 2  # + the graph diff's op counts


def test_stored_results_show_advice_chart_reasons_and_refusals(empty_home: Path) -> None:
    _stored_comparison(empty_home)
    at = _open_parent(new_app(PAGE))
    assert_clean(at)
    assert any("No variant is both faster than m:1 and within 1.0%" in w for w in texts(at.warning))
    assert len(elements_of_type(at, "plotly_chart")) == 2 + 1  # + the graph diff's op-count bars
    reasons = " ".join(texts(at.markdown))
    assert "agrees with the parent on 97.5% of rows (1 of 40 change class)" in reasons
    assert "**fp16** was not created: fp16 does not apply: because" in texts(at.info)
    caption = " ".join(texts(at.caption))
    assert "Measured" in caption and "40 rows of reference data of m:1" in caption


def test_a_wider_tolerance_changes_the_advice_without_measuring(empty_home: Path) -> None:
    _stored_comparison(empty_home)
    at = _open_parent(new_app(PAGE))
    at.slider(key="compare.tolerance").set_value(3.0)
    at.run()
    assert_clean(at)
    assert any(s.startswith("Serve m:2 (int8-static): 2.00× faster at batch 1") for s in texts(at.success))
    assert _measurement_rows(empty_home) == 2


def test_flipped_rows_are_listed_with_their_input_values(empty_home: Path) -> None:
    _stored_comparison(empty_home)
    at = _open_parent(new_app(PAGE))
    flipped = at.dataframe[1].value
    listed = flipped[["row", "parent", "variant"]].to_dict("records")
    assert listed == [{"row": 5, "parent": "green", "variant": "blue"}]
    assert flipped["a"].iloc[0] == reference_frame()["a"].iloc[5]


def test_promote_points_an_alias_at_the_chosen_variant(empty_home: Path) -> None:
    _stored_comparison(empty_home)
    at = _open_parent(new_app(PAGE))
    at.text_input(key="compare.alias").set_value("fast")
    button(at, "Promote").click()
    at.run()
    assert_clean(at)
    assert "@fast now points at m:2." in texts(at.success)
    portal = Portal.open(empty_home)
    assert portal.get("m@fast").ref == "m:2"
    portal.close()


def test_a_comparison_without_data_measures_on_synthetic_inputs(empty_home: Path) -> None:
    # issue 14 item 4: no reference data and no upload measures speed, size and agreement on inputs
    # generated from the signature (it used to stop at "no evaluation data")
    portal = Portal.open(empty_home)
    add_model(portal, softmax_classifier(), "bare", task="classification")
    portal.close()
    at = new_app(PAGE)
    at.pills(key="compare.methods").set_value(["optimized"])
    button(at, "Create variants and compare").click()
    at.run(timeout=300)
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert _measurement_rows(empty_home) == 2
    assert any("256 rows of synthetic inputs generated from the signature" in c for c in texts(at.caption))
    portal = Portal.open(empty_home)
    stored = load_comparison(portal, "bare:1")
    portal.close()
    assert stored is not None and stored.run.dataset["synthetic"] is True


# -- issue 14 item 7: the card's reason, no promote without a gain ------------------------------------
def _stored_close_call(home: Path, *, low: float, high: float) -> None:
    """m:1 and an optimized variant m:2 whose speedup interval at every batch is [low, high] (400 rounds)."""
    portal = classifier_store(home)
    parent = portal.get("m:1")
    portal.registry.add_version("m", blob_sha=parent.blob_sha, size_bytes=parent.size_bytes, source_format="onnx",
                                info=parent.info, meta=parent.meta, parent="m:1", method="optimized",
                                reference_sha=parent.reference_sha)
    variant = _measurement("m:2", "optimized", 0.1, 4000, 1.0, [])
    middle = (low + high) / 2
    paired = {"paired_speedup": middle, "ci_low": low, "ci_high": high, "confidence": 0.99, "faster_rounds": 220,
              "p_faster": 0.03, "p_slower": 0.97, "rounds": 400}
    variant = VersionMeasurement(**{**variant.__dict__,
                                    "latency": {b: {**s, **paired} for b, s in variant.latency.items()}})
    dataset = {"sha": "0" * 64, "rows": 40, "source": "reference data of m:1", "label_column": "target"}
    save_run(portal.registry.engine, [_measurement("m:1", None, 0.1, 4000, 1.0, []), variant], dataset=dataset,
             environment=environment(), extra={"refused": {}}, actor="tests")
    portal.close()


def test_the_card_says_too_close_to_call_and_offers_no_promote(empty_home: Path) -> None:
    _stored_close_call(empty_home, low=1.01, high=1.09)
    at = _open_parent(new_app(PAGE))
    assert_clean(at)
    headline = "Too close to call: m:2 (optimized) measured within the noise of m:1"
    assert any(i.startswith(headline) for i in texts(at.info))
    why = " ".join(texts(at.markdown))
    assert ("m:2 (optimized) · too close to call: No clear gain (too close to call): at batch 1 it measured 1.05× "
            "faster, but could be 1.01× to 1.09× after 400 paired rounds") in why
    assert not [b for b in at.button if b.label == "Promote"]
    assert any("No variant to promote" in c for c in texts(at.caption))


def test_a_variant_with_no_gain_is_not_offered_for_promotion(empty_home: Path) -> None:
    _stored_close_call(empty_home, low=0.99, high=1.02)
    at = _open_parent(new_app(PAGE))
    assert_clean(at)
    assert any("No variant is both faster than m:1" in w for w in texts(at.warning))
    assert "m:2 (optimized) · no gain:" in " ".join(texts(at.markdown))
    assert not [b for b in at.button if b.label == "Promote"]


def test_a_recommended_variant_shows_why_and_is_preselected_for_promotion(empty_home: Path) -> None:
    _stored_close_call(empty_home, low=1.2, high=1.4)
    at = _open_parent(new_app(PAGE))
    assert_clean(at)
    assert any(s.startswith("Serve m:2 (optimized): 1.30× faster at batch 1") for s in texts(at.success))
    assert ("**Why:** Faster beyond the measurement noise: 1.30× faster at batch 1 (99% interval 1.20–1.40×)"
            in " ".join(texts(at.markdown)))
    assert at.selectbox(key="compare.promote").value == "m:2"
    assert at.selectbox(key="compare.promote").options == ["m:2 (recommended)"]
