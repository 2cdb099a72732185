"""The adversarial corpus (``tests/adversarial.py``) through every front door it applies to.

For each case and door: the user sees a clear error (an exception, ``error: ...``
on stderr with exit code 1, a 4xx ``{"error": ...}``, or an error box), nothing
is registered, no file appears in the store or next to the input (and the
staging area is empty again), the canary a payload would create is absent, and
the REST server still answers ``/v2/health/ready``.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import streamlit as st
from adversarial import CASES, FORMULAS, LIMITS, Case, canary, cases_for
from api_fixtures import REPO, Tokens, make_users, serve
from streamlit.testing.v1 import AppTest
from tiny import add_model, files_under, image_model, int_input_model, softmax_classifier, two_input_model
from ui_fixtures import _use_home as use_home
from ui_fixtures import assert_clean, new_app, texts

from portal import Portal
from portal.config import Settings
from portal.errors import PortalError

MODELS = {"iris": softmax_classifier, "counts": int_input_model, "digits": image_model, "mixed": two_input_model}
_VOLATILE = ("-wal", "-shm", "-journal", ".log")


# -- what every door must leave as it was -----------------------------------------------------


def _seed(home: Path) -> Portal:
    portal = Portal.open(home, settings=_settings(home))
    for name, build in MODELS.items():
        add_model(portal, build(), name)
    return portal


def _settings(home: Path) -> Settings:
    return Settings.from_env({**LIMITS, "PORTAL_HOME": str(home)})


def _refs(home: Path) -> list[str]:
    portal = Portal.open(home, check=False)  # no fsck: it would tidy away what a door left behind
    try:
        return sorted(v.ref for m in portal.list_models() for v in m.versions)
    finally:
        portal.close()


def _files(root: Path) -> set[Path]:
    return {p for p in files_under(root) if not p.name.endswith(_VOLATILE)}


@dataclass
class Snapshot:
    """Registry contents and files before a case ran."""

    home: Path
    folder: Path
    refs: list[str]
    home_files: set[Path]
    folder_files: set[Path]

    @classmethod
    def take(cls, home: Path, folder: Path) -> Snapshot:
        return cls(home, folder, _refs(home), _files(home), _files(folder))

    def assert_untouched(self, *, produced: tuple[Path, ...] = (), claimed: str | None = None) -> None:
        """Nothing registered, no file added or removed (but ``produced``), nothing where ``claimed`` points."""
        assert _refs(self.home) == self.refs, "something was registered"
        assert _files(self.home) == self.home_files, "files appeared or vanished in the store"
        assert files_under(self.home / "tmp") == [], "staging debris left behind"
        assert _files(self.folder) == self.folder_files | set(produced), "files appeared next to the input"
        assert not canary(self.folder).exists(), "a payload ran"
        if claimed and "\0" not in claimed and len(claimed) < 4096:
            for base in (self.home, self.home / "tmp", self.home / "tmp" / "staging"):
                assert not os.path.lexists(os.path.normpath(base / claimed)), f"{claimed!r} was written"


def _build(case: Case, root: Path) -> tuple[Path, Path]:
    folder = root / "in"
    folder.mkdir()
    return folder, case.build(folder)


def _params(cases: list[Case], door: str) -> list[Any]:
    params = []
    for case in cases:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail[door])] if door in case.xfail else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


def _escaped_cells(text: str) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [row["cat_out"] for row in rows]


# -- library ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("lib") / "home"
    _seed(home).close()
    return home


@pytest.fixture(scope="module")
def lib_portal(lib_home: Path) -> Iterator[Portal]:
    portal = Portal.open(lib_home, settings=_settings(lib_home), check=False)
    yield portal
    portal.close()


@pytest.mark.parametrize("case", _params(cases_for("lib", "upload"), "lib"))
def test_library_refuses_upload(case: Case, lib_portal: Portal, lib_home: Path, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(lib_home, folder)
    with pytest.raises(PortalError) as info:
        lib_portal.register(src, case.name, filename=case.filename or src.name)
    assert case.expect in info.value.message
    before.assert_untouched(claimed=case.filename)


@pytest.mark.parametrize("case", _params([c for c in cases_for("lib", "predict") if not c.escaped], "lib"))
def test_library_refuses_prediction(case: Case, lib_portal: Portal, lib_home: Path, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(lib_home, folder)
    with pytest.raises(PortalError) as info:
        lib_portal.predict(case.model, src)
    assert case.expect in info.value.message
    if src.suffix == ".csv":  # the streamed path reads CSV with another parser
        with pytest.raises(PortalError) as info:
            lib_portal.predict_file(case.model, src, folder / "out.csv")
        assert case.expect in info.value.message
    before.assert_untouched()


def test_library_escapes_formula_cells(lib_portal: Portal, lib_home: Path, tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c.escaped]
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(lib_home, folder)
    lib_portal.predict_file(case.model, src, folder / "out.csv")
    assert _escaped_cells((folder / "out.csv").read_text()) == ["'" + cell for cell in FORMULAS]
    before.assert_untouched(produced=(folder / "out.csv",))


# -- command line ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli") / "home"
    _seed(home).close()
    return home


def _cli(home: Path, case: Case, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **LIMITS, "PORTAL_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "portal.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_cli_error(done: subprocess.CompletedProcess[str], expect: str) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expect in lines[0]


@pytest.mark.parametrize("case", _params(cases_for("cli", "upload"), "cli"))
def test_cli_refuses_upload(case: Case, cli_home: Path, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(cli_home, folder)
    done = _cli(cli_home, case, "register", str(src), *(["--name", case.name] if case.name else []))
    _assert_cli_error(done, case.expect)
    before.assert_untouched()


@pytest.mark.parametrize("case", _params([c for c in cases_for("cli", "predict") if not c.escaped], "cli"))
def test_cli_refuses_prediction(case: Case, cli_home: Path, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(cli_home, folder)
    _assert_cli_error(_cli(cli_home, case, "predict", case.model, "--input", str(src)), case.expect)
    before.assert_untouched()


def test_cli_escapes_formula_cells(cli_home: Path, tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c.escaped]
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(cli_home, folder)
    done = _cli(cli_home, case, "predict", case.model, "--input", str(src), "--output", str(folder / "out.csv"))
    assert done.returncode == 0, done.stderr
    assert _escaped_cells((folder / "out.csv").read_text()) == ["'" + cell for cell in FORMULAS]
    before.assert_untouched(produced=(folder / "out.csv",))


# -- REST ------------------------------------------------------------------------------------------------


@dataclass
class Rest:
    url: str
    home: Path
    tokens: Tokens

    def ready(self) -> int:
        return httpx.get(f"{self.url}/v2/health/ready", timeout=10).status_code


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    home = tmp_path_factory.mktemp("rest") / "home"
    portal = _seed(home)
    tokens = make_users(portal)
    portal.close()
    for server in serve(home, env=LIMITS):
        yield Rest(server.url, home, tokens)
        assert "Traceback" not in server.log()


def _assert_rest_error(response: httpx.Response, case: Case) -> None:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if case.status is not None:
        assert response.status_code == case.status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert list(body) == ["error"] and case.message_for("rest") in body["error"]


def _predict_request(case: Case, src: Path) -> tuple[str, bytes]:
    kind = "text/csv" if src.suffix == ".csv" else "application/json"
    return kind, src.read_bytes()


@pytest.mark.parametrize("case", _params(cases_for("rest", "upload"), "rest"))
def test_rest_refuses_upload(case: Case, rest: Rest, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(rest.home, folder)
    response = httpx.post(
        f"{rest.url}/api/models", headers=rest.tokens.headers("analyst"), timeout=120,
        files={"file": (case.filename or src.name, src.read_bytes(), "application/octet-stream")},
        data={"name": case.name} if case.name else {},
    )
    _assert_rest_error(response, case)
    before.assert_untouched(claimed=case.filename)
    assert rest.ready() == 200


@pytest.mark.parametrize("case", _params([c for c in cases_for("rest", "predict") if not c.escaped], "rest"))
def test_rest_refuses_prediction(case: Case, rest: Rest, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(rest.home, folder)
    kind, body = _predict_request(case, src)
    response = httpx.post(f"{rest.url}/api/models/{case.model}/predict", content=body, timeout=60,
                          headers={**rest.tokens.headers("viewer"), "Content-Type": kind})
    _assert_rest_error(response, case)
    before.assert_untouched()
    assert rest.ready() == 200


def test_rest_escapes_formula_cells(rest: Rest, tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c.escaped]
    folder, src = _build(case, tmp_path)
    response = httpx.post(f"{rest.url}/api/models/{case.model}/predict", content=src.read_bytes(), timeout=60,
                          headers={**rest.tokens.headers("viewer"), "Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert _escaped_cells(response.text) == ["'" + cell for cell in FORMULAS]


@pytest.mark.parametrize("case", _params(cases_for("rest", "request"), "rest"))
def test_rest_refuses_request(case: Case, rest: Rest, tmp_path: Path) -> None:
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(rest.home, folder)
    spec = case.request
    assert spec is not None
    headers = {**rest.tokens.headers("viewer"), **spec.headers}
    if spec.content_type:
        headers["Content-Type"] = spec.content_type
    response = httpx.request(spec.method, rest.url + spec.path.format(model=case.model), content=src.read_bytes(),
                             headers=headers, timeout=60)
    _assert_rest_error(response, case)
    before.assert_untouched()
    assert rest.ready() == 200


# -- Streamlit upload page -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upload_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppTest, Path]]:
    """One Upload page for the module: each case drops its file where the previous one was refused."""
    home = tmp_path_factory.mktemp("ui") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in LIMITS.items():
            mp.setenv(key, value)
        use_home(home, mp)
        try:
            at = new_app("app_pages/upload.py")
            assert_clean(at)
            yield at, home
        finally:
            st.cache_resource.clear()


@pytest.mark.parametrize("case", _params(cases_for("ui", "upload"), "ui"))
def test_upload_page_refuses_upload(case: Case, upload_page: tuple[AppTest, Path], tmp_path: Path) -> None:
    at, home = upload_page
    folder, src = _build(case, tmp_path)
    before = Snapshot.take(home, folder)
    uploader = next(u for u in at.file_uploader if u.label.startswith("Drag and drop"))
    uploader.set_value((case.filename or src.name, src.read_bytes(), "application/octet-stream"))
    at.run()
    assert_clean(at)
    errors = texts(at.error)
    assert len(errors) == 1 and case.expect in errors[0] and "Traceback" not in errors[0], errors
    assert "Validation report" not in texts(at.subheader)
    before.assert_untouched(claimed=case.filename)
