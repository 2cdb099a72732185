"""``portal compress`` and ``portal compare`` take the settings of distill and int8-budgeted, and list the methods
from the registry (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import add_model, softmax_classifier

from portal import Portal
from portal.compress.methods import METHODS


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_HOME=str(home), COLUMNS="400", TERM="dumb", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def tiny(portal: Portal) -> Portal:
    add_model(portal, softmax_classifier(), "tiny", task="classification")
    return portal


@pytest.mark.parametrize("command", ["compress", "compare"])
def test_the_help_lists_every_method_of_the_registry(portal: Portal, command: str) -> None:
    shown = _cli(portal.home, command, "--help").stdout
    assert all(name in shown for name in METHODS), shown
    for option in ("--student", "--train-seconds", "--tolerance"):
        assert option in shown


def test_compare_help_offers_the_gate(portal: Portal) -> None:
    assert "--gate" in _cli(portal.home, "compare", "--help").stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--method", "distill", "--student", "vgg"), "error: invalid student 'vgg' for distill: expected one of auto"),
    (("--method", "distill", "--train-seconds", "-1"), "error: train_seconds must be more than 0"),
    (("--method", "int8-budgeted", "--tolerance", "0.9"), "error: invalid tolerance 0.9 for int8-budgeted"),
    (("--method", "prune", "--student", "mlp"), "error: student does not apply to prune; it takes sparsity"),
])
def test_compress_hands_the_new_settings_to_the_method(tiny: Portal, args: tuple[str, ...], message: str) -> None:
    refused = _cli(tiny.home, "compress", "tiny:1", *args)
    assert refused.returncode == 1 and refused.stderr.startswith(message), refused.stderr
    assert [v.version for v in tiny.get_model("tiny").versions] == [1]


def test_compare_hands_the_student_and_budget_to_distill(tiny: Portal) -> None:
    refused = _cli(tiny.home, "compare", "tiny:1", "--methods", "distill", "--student", "vgg")
    assert refused.returncode == 1 and "invalid student 'vgg' for distill" in refused.stderr
    refused = _cli(tiny.home, "compare", "tiny:1", "--methods", "distill", "--train-seconds", "0")
    assert refused.returncode == 1 and "train_seconds must be more than 0" in refused.stderr
