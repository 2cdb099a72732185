#!/usr/bin/env bash
# Create or refresh .venv/ when it is missing or requirements changed.
# Usage: scripts/setup.sh [--test-deps]
#   --test-deps also installs what the tests drive for real: Debian's chromium (browser
#   tests) and postgresql (the registry suite runs against a throw-away PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PORTAL_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=".venv/.requirements.sha256"
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "setup: installing requirements (first time: a few minutes)"
    log=".venv/pip-install.log"
    if ! { .venv/bin/python -m pip install --quiet -r requirements.txt &&
           .venv/bin/python -m pip install --quiet --no-deps -e . ; } >"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" | tail -30 >&2
        echo "setup: pip install failed (full log: $log)" >&2
        exit 1
    fi
    .venv/bin/python -c "import portal, onnxruntime, torch, streamlit"
    echo "$want" > "$stamp"
fi
if [[ "${1:-}" == "--test-deps" ]]; then
    missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium chromium-driver)
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
    if (( ${#missing[@]} )); then
        echo "setup: installing Debian packages: ${missing[*]}"
        SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
