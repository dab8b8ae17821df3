#!/usr/bin/env bash
# Build and install the Python binding into a venv, only when its sources or the core's
# changed (or the module is missing). Used by run_tests.sh and bench/run.sh.
#
#   bash bindings/python/build.sh            prints nothing but the build's progress
#
# Environment: TETHER_VENV (default <repo>/.venv, created when missing), CARGO_TARGET_DIR
# (default /var/tmp/tether-target), TETHER_PY_PROFILE (release | dev, default release).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${TETHER_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tether-target}"
PROFILE="${TETHER_PY_PROFILE:-release}"

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi

# Tools, pinned (only when something is missing or the pins changed).
REQ_STAMP="$VENV/.tether-python-dev-requirements"
REQ_HASH="$(sha256sum "$HERE/requirements-dev.txt" | cut -d' ' -f1)"
if [ ! -f "$REQ_STAMP" ] || [ "$(cat "$REQ_STAMP")" != "$REQ_HASH" ]; then
    "$PY" -m pip install -q -r "$HERE/requirements-dev.txt"
    echo "$REQ_HASH" > "$REQ_STAMP"
fi

# Rebuild when the binding's or the core's sources changed (or the module is missing).
BUILD_STAMP="$VENV/.tether-python-build"
SRC_HASH="$(
    cd "$ROOT" && {
        find src bindings/python/src -type f -name '*.rs' -print0 | sort -z | xargs -0 sha256sum
        sha256sum Cargo.toml Cargo.lock bindings/python/Cargo.toml bindings/python/pyproject.toml
        echo "$PROFILE"
    } | sha256sum | cut -d' ' -f1
)"
if [ ! -f "$BUILD_STAMP" ] || [ "$(cat "$BUILD_STAMP")" != "$SRC_HASH" ] \
    || ! "$PY" -c 'import tether._tether' 2>/dev/null; then
    echo "building the Python binding ($PROFILE)..." >&2
    PROFILE_FLAG=()
    [ "$PROFILE" = release ] && PROFILE_FLAG=(--release)
    (cd "$HERE" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop "${PROFILE_FLAG[@]}" -q)
    echo "$SRC_HASH" > "$BUILD_STAMP"
fi
