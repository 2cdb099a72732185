"""The `portal` command line, run as a real subprocess on a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny import add_model, softmax_classifier

FEATURES = ["a", "b", "c", "d"]


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=120)


@pytest.fixture
def store(portal):
    add_model(portal, softmax_classifier(), "cls", task="classification",
              feature_names=FEATURES, class_labels=["red", "green", "blue"])
    return portal


def test_list_and_show_as_json(store):
    listed = json.loads(run(store.home, "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["cls"] and listed[0]["latest"] == 1
    shown = json.loads(run(store.home, "show", "cls:1", "--json").stdout)
    assert shown["ref"] == "cls:1" and shown["signature"]["inputs"][0]["shape"] == ["N", 4]
    assert shown["class_labels"] == ["red", "green", "blue"]


def test_show_text_is_human_readable(store):
    out = run(store.home, "show", "cls").stdout
    assert "cls:1" in out and "x: float32[N, 4]" in out and "classes:    red, green, blue" in out


def test_predict_writes_output_by_suffix(store, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 4))
    pd.DataFrame(x, columns=FEATURES).to_csv(tmp_path / "in.csv", index=False)
    for suffix in (".csv", ".json", ".npz"):
        result = run(store.home, "predict", "cls", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / f"out{suffix}"))
        assert result.returncode == 0, result.stderr
    assert list(pd.read_csv(tmp_path / "out.csv").columns)[:2] == ["prediction", "proba_red"]
    assert len(json.loads((tmp_path / "out.json").read_text())) == 4
    assert np.load(tmp_path / "out.npz")["probs"].shape == (4, 3)


def test_alias_then_delete_refused_then_forced(store):
    assert run(store.home, "alias", "cls:1", "production").stdout.strip() == "cls@production → cls:1"
    refused = run(store.home, "delete", "cls:1", "--yes")
    assert refused.returncode == 1 and "alias @production" in refused.stderr
    assert run(store.home, "delete", "cls:1", "--yes", "--force").returncode == 0
    assert json.loads(run(store.home, "list", "--json").stdout) == []


def test_delete_without_yes_on_non_tty_refuses(store):
    result = run(store.home, "delete", "cls", stdin="")
    assert result.returncode == 1 and "add --yes" in result.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["show", "nope"], "no model named 'nope'"),
        (["show", "../etc"], "invalid model name"),
        (["predict", "cls", "--input", "/nonexistent.csv"], "no such file"),
        (["alias", "cls:1", "bad alias"], "invalid alias"),
        (["register", "/nonexistent.onnx"], "no such file"),
    ],
)
def test_user_errors_are_one_line_without_traceback(store, args, fragment):
    result = run(store.home, *args)
    assert result.returncode == 1
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_predict_with_missing_column_names_it(store, tmp_path):
    pd.DataFrame({"a": [1.0], "b": [2.0]}).to_csv(tmp_path / "in.csv", index=False)
    result = run(store.home, "predict", "cls", "--input", str(tmp_path / "in.csv"))
    assert result.returncode == 1 and "missing column(s) 'c', 'd'" in result.stderr
