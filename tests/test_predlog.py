"""The prediction log writer: what is recorded, batching, bounds, retention, both databases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select, text
from tiny import add_model, softmax_classifier

from portal import Portal
from portal.storage.db import PredictionRow
from portal.errors import InvalidInputError
from portal.monitor.log import PredictionLog, sample_frame_dict

T0 = 1_790_000_000.0  # a fixed clock: 2026-09-21


def _rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(PredictionRow.__table__).order_by(PredictionRow.id)).mappings().all()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_predictions_and_failures_are_logged_with_caller_and_sample(portal_home, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    p = Portal.open(portal_home, db_url=url)
    model_id = add_model(p, softmax_classifier(), "m", feature_names=["a", "b", "c", "d"]).model_id
    p.monitor.clock = lambda: T0
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    p.predict("m", x)
    p.predict("m", x[:2])  # within the sample interval: logged, not sampled
    with pytest.raises(InvalidInputError):
        p.predict("m", np.zeros((3, 5), np.float32))
    assert p.monitor.flush() == 3
    rows = _rows(p.registry.engine)
    assert [(r["model_id"], r["version"], r["rows"], r["source"]) for r in rows] == [
        (model_id, 1, 10, "library"), (model_id, 1, 2, "library"), (model_id, 1, 0, "library")]
    assert all(r["caller"] == p.actor and r["ts"] == dt.datetime(2026, 9, 21, 14, 13, 20) for r in rows)
    first = rows[0]
    assert first["cache_hit"] is False and rows[1]["cache_hit"] is True
    assert first["sample"]["columns"] == ["a", "b", "c", "d"]
    assert first["sample"]["rows"] == x[: p.monitor.sample_rows].tolist()
    assert rows[1]["sample"] is None
    assert rows[2]["error_kind"] == "InvalidInputError" and "5" in rows[2]["error"] and rows[2]["sample"] is None
    assert all(r["latency_ms"] > 0 for r in rows)
    p.close()


def test_scoped_portal_logs_its_user_and_source(portal):
    from portal.accounts.auth import User

    add_model(portal, softmax_classifier(), "m")
    portal.as_user(User(id=7, name="ana", role="analyst"), source="ui").predict("m", np.zeros((1, 4), np.float32))
    portal.monitor.flush()
    (row,) = _rows(portal.registry.engine)
    assert (row["caller"], row["source"]) == ("ana", "ui")


def test_monitor_off_logs_nothing(portal_home):
    p = Portal.open(portal_home, monitor=False)
    add_model(p, softmax_classifier(), "m")
    p.predict("m", np.zeros((1, 4), np.float32))
    assert p.monitor is None
    with p.registry.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar() == 0
    p.close()


def test_the_queue_is_bounded_and_a_failed_write_keeps_the_rows(portal):
    add_model(portal, softmax_classifier(), "m")
    log = PredictionLog(portal.registry.engine, max_queue=5, clock=lambda: T0)
    for _ in range(8):
        log.record("m", 1, caller="c", source="library", rows=1, latency_s=0.001)
    assert log.dropped == 3 and len(log._queue) == 5
    with portal.registry.engine.connect() as conn:  # the table is gone: the write fails
        conn.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
        conn.commit()
    with pytest.raises(Exception, match="predictions"):
        log.flush()
    assert len(log._queue) == 5  # kept for the next try
    with portal.registry.engine.connect() as conn:
        conn.execute(text("ALTER TABLE predictions_away RENAME TO predictions"))
        conn.commit()
    assert log.flush() == 5 and log.written == 5
    log.close()


def test_prune_deletes_only_rows_past_retention(portal):
    add_model(portal, softmax_classifier(), "m")
    now = {"t": T0}
    log = PredictionLog(portal.registry.engine, retention_days=30, clock=lambda: now["t"])
    for age_days in (45, 31, 29, 0):
        now["t"] = T0 - age_days * 86400
        log.record("m", 1, caller="c", source="api", rows=age_days, latency_s=0.01)
    log.flush()
    assert log.prune(now=T0) == 2
    assert sorted(r["rows"] for r in _rows(portal.registry.engine)) == [0, 29]
    log.close()


def test_sample_frames_for_the_input_layouts():
    one = sample_frame_dict({"x": np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)}, None)
    assert one == {"columns": ["x[0]", "x[1]"], "rows": [[1.0, None], [3.0, 4.0]]}
    per_column = sample_frame_dict(
        {"colour": np.array([["red"], ["blue"]], object), "size": np.array([[1], [2]], np.int64)}, None)
    assert per_column == {"columns": ["colour", "size"], "rows": [["red", 1], ["blue", 2]]}
    assert sample_frame_dict({"image": np.zeros((2, 3, 8, 8), np.float32)}, None) is None
    named = sample_frame_dict({"x": np.ones((1, 2), np.float32)}, ["height", "weight"])
    assert named["columns"] == ["height", "weight"]
