#!/usr/bin/env bash
# Set up .venv if needed, register the demo models (idempotent), start the portal.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PORTAL_HOME="${PORTAL_HOME:-$PWD/model_cache}"
exec .venv/bin/portal ui --demo --host "${PORTAL_UI_HOST:-127.0.0.1}" --port "${PORTAL_UI_PORT:-8501}"
