#!/usr/bin/env bash
# Build and install the Python binding into the repo's venv (only when its sources or
# the core's changed), check the stubs with mypy.stubtest, then run the pytest suite.
#
#   bash bindings/python/run_tests.sh [pytest args...]
#
# Environment: TETHER_VENV (default <repo>/.venv), CARGO_TARGET_DIR (default
# /var/tmp/tether-target), TETHER_PY_PROFILE (release | dev, default release).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${TETHER_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

bash "$HERE/build.sh"

cd "$HERE"
"$PY" -m mypy.stubtest tether._tether
exec "$PY" -m pytest tests "$@"
