#!/usr/bin/env bash
# Set up .venv (and Debian's chromium and postgresql) if needed, then run the whole test suite,
# browser tests included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test-deps
export PYTHONDONTWRITEBYTECODE=1
set +e
.venv/bin/python -m pytest tests -q -ra --durations=15 "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
    echo "test: no tests were collected" >&2
    exit 1
fi
exit $status
